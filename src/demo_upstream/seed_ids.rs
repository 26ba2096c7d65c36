//! Stable ids of the seed records that gateway configuration and tests refer
//! to by name (permission rules, partner assignments, end-to-end checks).
//!
//! The seed itself lives in `data.rs`; these constants exist so that a rename
//! there breaks the compiler instead of silently breaking a permission test.

/// "Account 100", the customer from the Data Permissions document. It has
/// relationships of type "Product A" and "Spark" and CTAs linked to them.
pub const ACCOUNT_100: &str = "co-100";

/// Partner organisation "Acme Partners".
pub const PARTNER_ACME: &str = "p-acme";
/// Partner organisation "Globex Channel".
pub const PARTNER_GLOBEX: &str = "p-globex";

/// Relationship type "Product A".
pub const TYPE_PRODUCT_A: &str = "rt-product-a";
/// Relationship type "Spark".
pub const TYPE_SPARK: &str = "rt-spark";
/// Relationship type "Premium Support".
pub const TYPE_PREMIUM_SUPPORT: &str = "rt-support";

/// Account 100's "Product A" relationship, business unit BU1.
pub const REL_ACCOUNT_100_PRODUCT_A: &str = "rel-1";
/// Account 100's "Spark" relationship, business unit BU2.
pub const REL_ACCOUNT_100_SPARK: &str = "rel-2";
/// Account 100's second "Spark" relationship (a pilot), business unit BU1.
pub const REL_ACCOUNT_100_SPARK_PILOT: &str = "rel-3";

/// Through-partner customers of Acme Partners.
pub const ACME_COMPANIES: [&str; 3] = ["co-106", "co-107", "co-108"];
/// Through-partner customers of Globex Channel.
pub const GLOBEX_COMPANIES: [&str; 3] = ["co-109", "co-110", "co-111"];

/// Report whose export contains personal data (contacts).
pub const REPORT_CONTACTS: &str = "rep-3";
/// Report whose export contains personal data (leads).
pub const REPORT_LEADS: &str = "rep-4";
