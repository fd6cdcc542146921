//! Environment variable names coderd, the provisioner daemon and the operator care about.

/// Provisioner key the daemon authenticates with.
pub const PROVISIONER_KEY: &str = "CODER_PROVISIONER_DAEMON_KEY";
/// Legacy pre-shared key.
pub const PROVISIONER_PSK: &str = "CODER_PROVISIONER_DAEMON_PSK";
/// Organization flag's env form.
pub const ORGANIZATION: &str = "CODER_ORGANIZATION";
/// Provisioner tags flag's env form.
pub const PROVISIONER_TAGS: &str = "CODER_PROVISIONERD_TAGS";
/// Provisioner daemon name.
pub const DAEMON_NAME: &str = "CODER_PROVISIONER_DAEMON_NAME";
/// coderd URL the daemon connects to.
pub const CODER_URL: &str = "CODER_URL";
/// coderd's database URL.
pub const PG_CONNECTION_URL: &str = "CODER_PG_CONNECTION_URL";
/// coderd's access URL.
pub const ACCESS_URL: &str = "CODER_ACCESS_URL";
/// Workspace proxy: the primary coderd's access URL (set by the operator).
pub const PRIMARY_ACCESS_URL: &str = "CODER_PRIMARY_ACCESS_URL";
/// Workspace proxy: its session token (set by the operator from a Secret).
pub const PROXY_SESSION_TOKEN: &str = "CODER_PROXY_SESSION_TOKEN";
/// Prefix of AI Bridge settings (deprecated alias of `CODER_AI_GATEWAY_`).
pub const AI_BRIDGE_PREFIX: &str = "CODER_AIBRIDGE_";
/// Prefix of AI Gateway settings.
pub const AI_GATEWAY_PREFIX: &str = "CODER_AI_GATEWAY_";
/// Annotation whose non-empty value (a reason) allows a change to frozen AI-provider env.
pub const AI_ENV_BREAK_GLASS_ANNOTATION: &str = "coderd.coder.com/ai-env-break-glass";
