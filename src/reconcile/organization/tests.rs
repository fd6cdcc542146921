use std::collections::BTreeMap;

use super::*;
use crate::coderd::ApiError;

fn spec() -> CoderOrganizationSpec {
    CoderOrganizationSpec {
        display_name: Some("Platform".into()),
        description: Some("The platform team".into()),
        icon: Some("/icon/platform.svg".into()),
        ..CoderOrganizationSpec::default()
    }
}

fn org(name: &str) -> Organization {
    Organization {
        id: "0000-org".into(),
        name: name.into(),
        display_name: "Platform".into(),
        description: "The platform team".into(),
        icon: "/icon/platform.svg".into(),
        is_default: false,
    }
}

fn group(id: &str, name: &str) -> Group {
    Group { id: id.into(), name: name.into() }
}

fn mapping(entries: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    entries.iter().map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect())).collect()
}

fn api_error(status: u16, message: &str, detail: &str) -> coderd::Error {
    coderd::Error::Api(ApiError {
        endpoint: "DELETE /api/v2/organizations/x".into(),
        status,
        message: message.into(),
        detail: detail.into(),
        validations: Vec::new(),
        retry_after: None,
    })
}

#[test]
fn name_comes_from_the_spec_else_the_metadata() {
    let mut object = CoderOrganization::new("from-metadata", CoderOrganizationSpec::default());
    assert_eq!(org_name(&object), "from-metadata");
    object.spec.name = Some(String::new());
    assert_eq!(org_name(&object), "from-metadata");
    object.spec.name = Some("from-spec".into());
    assert_eq!(org_name(&object), "from-spec");
}

#[test]
fn an_absent_organization_is_created_with_the_spec_fields() {
    let create = |spec: &CoderOrganizationSpec| match plan_organization(spec, "platform", None) {
        OrgPlan::Create(request) => request,
        other => panic!("expected a create, got {other:?}"),
    };
    assert_eq!(
        create(&spec()),
        CreateOrganization {
            name: "platform".into(),
            display_name: Some("Platform".into()),
            description: Some("The platform team".into()),
            icon: Some("/icon/platform.svg".into()),
        }
    );
    let bare = create(&CoderOrganizationSpec { display_name: Some(String::new()), ..CoderOrganizationSpec::default() });
    assert_eq!(bare, CreateOrganization { name: "platform".into(), ..CreateOrganization::default() });
}

#[test]
fn an_existing_organization_gets_only_the_differing_managed_fields() {
    let full = spec();
    let unmanaged = CoderOrganizationSpec::default();
    let empty_display = CoderOrganizationSpec { display_name: Some(String::new()), ..spec() };
    let cleared = CoderOrganizationSpec { description: Some(String::new()), icon: Some(String::new()), ..spec() };
    let renamed_display = CoderOrganizationSpec { display_name: Some("Platform Team".into()), ..spec() };
    let cases: Vec<(&str, &CoderOrganizationSpec, Organization, UpdateOrganization)> = vec![
        ("steady state", &full, org("platform"), UpdateOrganization::default()),
        ("unset fields are not managed", &unmanaged, org("platform"), UpdateOrganization::default()),
        ("an empty display name is never sent", &empty_display, org("platform"), UpdateOrganization::default()),
        (
            "rename (found by ID)",
            &full,
            org("old-name"),
            UpdateOrganization { name: Some("platform".into()), ..UpdateOrganization::default() },
        ),
        (
            "display name",
            &renamed_display,
            org("platform"),
            UpdateOrganization { display_name: Some("Platform Team".into()), ..UpdateOrganization::default() },
        ),
        (
            "description and icon can be cleared",
            &cleared,
            org("platform"),
            UpdateOrganization {
                description: Some(String::new()),
                icon: Some(String::new()),
                ..UpdateOrganization::default()
            },
        ),
    ];
    for (case, spec, observed, want) in cases {
        match plan_organization(spec, "platform", Some(&observed)) {
            OrgPlan::Update { id, patch } => {
                assert_eq!(id, "0000-org", "{case}");
                assert_eq!(patch, want, "{case}");
            }
            other => panic!("{case}: expected an update, got {other:?}"),
        }
    }
}

#[test]
fn group_names_resolve_to_sorted_deduplicated_ids() {
    let groups = [group("id-b", "backend"), group("id-a", "admins"), group("id-e", "Everyone")];
    let spec = GroupSyncSpec {
        field: "groups".into(),
        mapping: mapping(&[("idp-eng", &["backend", "admins", "backend"]), ("idp-all", &["Everyone"]), ("none", &[])]),
        regex_filter: Some(String::new()),
        auto_create_missing_groups: true,
    };
    let desired = desired_group_sync(&spec, &groups, "platform").unwrap();
    assert_eq!(
        desired,
        GroupSyncSettings {
            field: "groups".into(),
            mapping: mapping(&[("idp-eng", &["id-a", "id-b"]), ("idp-all", &["id-e"]), ("none", &[])]),
            regex_filter: None,
            auto_create_missing_groups: true,
        }
    );
}

#[test]
fn unresolved_group_names_fail_the_whole_mapping() {
    let groups = [group("id-a", "admins")];
    let spec = GroupSyncSpec {
        field: "groups".into(),
        mapping: mapping(&[("x", &["admins", "ghosts"]), ("y", &["Admins"])]),
        ..GroupSyncSpec::default()
    };
    let surface = desired_group_sync(&spec, &groups, "platform").unwrap_err();
    assert_eq!((surface.type_, surface.ok, surface.reason.as_str()), (GROUP_SYNC_APPLIED, false, "UnresolvedGroups"));
    assert_eq!(surface.wait, Wait::Slow);
    for needle in ["\"ghosts\"", "\"Admins\"", "platform", "spec.groupSync.mapping", "create those groups"] {
        assert!(surface.message.contains(needle), "{needle}: {}", surface.message);
    }
    assert!(!surface.message.contains("\"admins\""), "a resolved name is not listed: {}", surface.message);
}

#[test]
fn group_sync_compares_normalised() {
    let desired = GroupSyncSettings {
        field: "groups".into(),
        mapping: mapping(&[("a", &["1", "2"])]),
        regex_filter: Some("^eng-".into()),
        auto_create_missing_groups: false,
    };
    let same_unordered = GroupSyncSettings { mapping: mapping(&[("a", &["2", "1", "2"])]), ..desired.clone() };
    let cases = [
        ("identical", desired.clone(), false),
        ("value order and duplicates", same_unordered, false),
        ("another field", GroupSyncSettings { field: "roles".into(), ..desired.clone() }, true),
        ("another filter", GroupSyncSettings { regex_filter: None, ..desired.clone() }, true),
        ("auto create", GroupSyncSettings { auto_create_missing_groups: true, ..desired.clone() }, true),
        ("missing entry", GroupSyncSettings { mapping: BTreeMap::new(), ..desired.clone() }, true),
        ("extra value", GroupSyncSettings { mapping: mapping(&[("a", &["1", "2", "3"])]), ..desired.clone() }, true),
    ];
    for (case, current, differs) in cases {
        assert_eq!(group_sync_differs(&desired, &current), differs, "{case}");
    }
    // coderd answers an empty mapping as null or {}, and no filter as null or "".
    let empty = GroupSyncSettings { field: "groups".into(), ..GroupSyncSettings::default() };
    let from_null: GroupSyncSettings = serde_json::from_str(
        r#"{"field":"groups","mapping":null,"regex_filter":"","auto_create_missing_groups":false}"#,
    )
    .unwrap();
    assert!(!group_sync_differs(&empty, &from_null));
}

#[test]
fn role_sync_uses_role_names_as_given_and_compares_normalised() {
    let spec = RoleSyncSpec { field: "roles".into(), mapping: mapping(&[("ops", &["organization-admin", "auditor"])]) };
    let desired = desired_role_sync(&spec);
    assert_eq!(desired.mapping, mapping(&[("ops", &["auditor", "organization-admin"])]));
    let reordered =
        RoleSyncSettings { field: "roles".into(), mapping: mapping(&[("ops", &["organization-admin", "auditor"])]) };
    assert!(!role_sync_differs(&desired, &reordered));
    assert!(role_sync_differs(&desired, &RoleSyncSettings { field: "roles".into(), mapping: BTreeMap::new() }));
    assert!(role_sync_differs(&desired, &RoleSyncSettings { field: "other".into(), ..desired.clone() }));
}

#[test]
fn the_default_organization_is_never_deleted() {
    let default = Organization { is_default: true, ..org("default") };
    let cases = [
        ("gone", None, Removal::Gone),
        ("ours", Some(org("platform")), Removal::Delete("0000-org".into())),
        ("default", Some(default), Removal::Keep(String::new())),
    ];
    for (case, observed, want) in cases {
        let got = plan_removal(observed.as_ref());
        match (&got, &want) {
            (Removal::Keep(note), Removal::Keep(_)) => assert!(note.contains("left in place"), "{case}: {note}"),
            _ => assert_eq!(got, want, "{case}"),
        }
    }
}

#[test]
fn deletion_answers_map_to_outcomes() {
    assert_eq!(deletion_outcome("platform", Ok(())), Ok(None));

    let default = deletion_outcome("platform", Err(api_error(400, "Default organization cannot be deleted.", "")));
    assert!(default.as_ref().is_ok_and(|n| n.as_ref().is_some_and(|n| n.contains("left in place"))), "{default:?}");

    let detail = "This organization has 2 workspace(s) that must be deleted first.";
    let blocked =
        deletion_outcome("platform", Err(api_error(500, "Error deleting organization.", detail))).unwrap_err();
    assert_eq!((blocked.type_, blocked.reason.as_str()), (ORGANIZATION_READY, "DeletionBlocked"));
    for needle in [detail, "delete the organization's workspaces and templates", "deletionPolicy: Retain"] {
        assert!(blocked.message.contains(needle), "{needle}: {}", blocked.message);
    }
    assert_eq!(blocked.wait, Wait::Backoff);

    let cases = [
        (api_error(500, "An internal server error occurred.", ""), "CoderdUnavailable"),
        (api_error(403, "Multiple Organizations is a Premium feature. Contact sales!", ""), "NotEntitled"),
        (api_error(405, "", ""), "NotSupported"),
    ];
    for (error, reason) in cases {
        let surface = deletion_outcome("platform", Err(error)).unwrap_err();
        assert_eq!(surface.reason, reason, "{}", surface.message);
    }
}

#[test]
fn dependencies_are_the_instance_only() {
    let mut spec = CoderOrganizationSpec::default();
    spec.instance_ref.name = "coder".into();
    let object = CoderOrganization::new("platform", spec);
    assert!(object.secret_names().is_empty());
    assert_eq!(object.instance_name(), Some("coder"));
}
