//! (family in progress)

use super::Rule;

/// Rules of this family.
pub const RULES: &[Rule] = &[];
