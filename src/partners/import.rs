//! `guise import partners FILE.csv`: partners and partner users from the
//! shape a CRM export has.
//!
//! One row per partner user:
//!
//! ```text
//! partner_id,partner_name,user_name,user_email,company_ids
//! p-acme,Acme Partners,Anna Acme,anna@acme.test,co-106;co-107
//! ```
//!
//! `company_ids` (and an optional `relationship_ids` column) list the
//! through-partner customers assigned to the partner, separated by `;`.
//! Every bad row is reported with its line and reason, and a file with bad
//! rows imports nothing unless told to skip them. Importing is idempotent:
//! a partner's assignments are the union of its rows, a user that exists
//! keeps everything but its partner, and re-importing the same file changes
//! nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::{Partner, PartnerStatus};
use crate::users::{Licence, Origin, User};

/// One row as the file has it.
#[derive(Debug, Deserialize)]
struct Row {
    partner_id: String,
    partner_name: String,
    user_name: String,
    user_email: String,
    #[serde(default)]
    company_ids: String,
    #[serde(default)]
    relationship_ids: String,
}

/// A row that cannot be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RowError {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    pub reason: String,
}

/// Why an import was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error("the file is not CSV with the columns partner_id, partner_name, user_name, user_email, company_ids: {0}")]
    NotCsv(String),
    #[error("{} bad row(s), nothing imported (pass --skip-bad-rows to import the others):\n{}", .0.len(), render(.0))]
    BadRows(Vec<RowError>),
}

fn render(errors: &[RowError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an import would change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Partners as they are to be saved (existing ones with the rows'
    /// assignments added).
    pub partners: Vec<Partner>,
    /// Users as they are to be saved (new, or existing with the partner
    /// set).
    pub users: Vec<User>,
    /// Rows left out (only with `skip_bad_rows`).
    pub skipped: Vec<RowError>,
}

impl Plan {
    /// Whether applying it would change nothing.
    pub fn is_empty(&self) -> bool {
        self.partners.is_empty() && self.users.is_empty()
    }
}

/// Read `csv` into a [`Plan`] against the partners and users there are
/// (`partner_of`, `user_by_email`), leaving out what would not change.
pub fn plan(
    csv: &[u8],
    skip_bad_rows: bool,
    partner_of: &dyn Fn(&str) -> Option<Partner>,
    user_by_email: &dyn Fn(&str) -> Option<User>,
) -> Result<Plan, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(csv);
    let headers = reader
        .headers()
        .map_err(|e| ImportError::NotCsv(e.to_string()))?
        .clone();
    for needed in ["partner_id", "partner_name", "user_name", "user_email"] {
        if !headers.iter().any(|h| h == needed) {
            return Err(ImportError::NotCsv(format!("no `{needed}` column")));
        }
    }
    let mut errors = Vec::new();
    let mut partners: BTreeMap<String, Partner> = BTreeMap::new();
    let mut users: BTreeMap<String, User> = BTreeMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                errors.push(RowError {
                    line,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let row: Row = match record.deserialize(Some(&headers)) {
            Ok(r) => r,
            Err(e) => {
                errors.push(RowError {
                    line,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if let Err(reason) = check_row(&row) {
            errors.push(RowError { line, reason });
            continue;
        }
        let partner = partners.entry(row.partner_id.clone()).or_insert_with(|| {
            partner_of(&row.partner_id).unwrap_or_else(|| Partner {
                id: row.partner_id.clone(),
                name: row.partner_name.clone(),
                status: PartnerStatus::Active,
                companies: BTreeSet::new(),
                relationships: BTreeSet::new(),
                reports: BTreeSet::new(),
                primary_user: None,
            })
        });
        if partner.name != row.partner_name {
            errors.push(RowError {
                line,
                reason: format!(
                    "partner {} is named `{}` elsewhere, `{}` here",
                    row.partner_id, partner.name, row.partner_name
                ),
            });
            continue;
        }
        partner.companies.extend(ids(&row.company_ids));
        partner.relationships.extend(ids(&row.relationship_ids));
        let email = row.user_email.to_lowercase();
        if let Some(seen) = users.get(&email) {
            if seen.partner.as_deref() != Some(row.partner_id.as_str()) {
                errors.push(RowError {
                    line,
                    reason: format!("{email} is listed for two partners"),
                });
            }
            continue;
        }
        let user = match user_by_email(&email) {
            Some(mut u) => {
                if u.paired.is_some() {
                    errors.push(RowError {
                        line,
                        reason: format!("{email} is a paired user"),
                    });
                    continue;
                }
                u.partner = Some(row.partner_id.clone());
                u
            }
            None => {
                let mut u = User::new(email.clone(), row.user_name.clone(), email.clone());
                u.partner = Some(row.partner_id.clone());
                u.licence = Licence::Full;
                u.origin = Origin::Admin;
                u
            }
        };
        if let Err(e) = user.check() {
            errors.push(RowError {
                line,
                reason: e.to_string(),
            });
            continue;
        }
        users.insert(email, user);
    }
    if !errors.is_empty() && !skip_bad_rows {
        return Err(ImportError::BadRows(errors));
    }
    // Leave out what would not change: re-importing is a no-op.
    let partners = partners
        .into_values()
        .filter(|p| partner_of(&p.id).as_ref() != Some(p))
        .collect();
    let users = users
        .into_values()
        .filter(|u| user_by_email(&u.email).as_ref() != Some(u))
        .collect();
    Ok(Plan {
        partners,
        users,
        skipped: errors,
    })
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub partners_saved: usize,
    pub users_saved: usize,
    pub skipped: Vec<RowError>,
}

/// Why `guise import partners` could not import into the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreImportError {
    #[error("the configuration's store is `memory`, which lives inside a running gateway; import through that gateway's admin API (POST /_guise/admin/partners/import), or use a Redis store")]
    MemoryStore,
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Seats(#[from] super::PartnerError),
    #[error("the store: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// `guise import partners FILE.csv`: plan the file against the partners and
/// users the configuration and the store hold now, check the Full seats,
/// then save and announce every change so running gateways pick it up.
pub async fn into_store(
    config: &crate::config::Config,
    store: &dyn crate::store::Store,
    csv: &[u8],
    skip_bad_rows: bool,
) -> Result<Report, StoreImportError> {
    use crate::store::StoreEvent;
    if config.sessions.store == crate::config::SessionStoreConfig::Memory {
        return Err(StoreImportError::MemoryStore);
    }
    let mut partners: BTreeMap<String, Partner> = config
        .partners
        .partners
        .iter()
        .map(|p| (p.id.clone(), p.clone()))
        .collect();
    for (id, json) in store.load_records(super::PARTNER).await? {
        match serde_json::from_str::<Partner>(&json) {
            Ok(p) => {
                partners.insert(p.id.clone(), p);
            }
            Err(e) => tracing::warn!(id = %id, error = %e, "ignoring unreadable stored partner"),
        }
    }
    let mut users: BTreeMap<String, User> = config
        .users
        .iter()
        .map(|u| (u.id.clone(), u.clone()))
        .collect();
    for (id, json) in store.load_users().await? {
        match serde_json::from_str::<User>(&json) {
            Ok(u) => {
                users.insert(u.id.clone(), u);
            }
            Err(e) => tracing::warn!(id = %id, error = %e, "ignoring unreadable stored user"),
        }
    }
    let by_email = |email: &str| {
        users
            .values()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .cloned()
    };
    let mut plan = plan(
        csv,
        skip_bad_rows,
        &|id| partners.get(id).cloned(),
        &by_email,
    )?;
    check_seats(&plan, users.values(), config.partners.full_seats)?;
    for u in &mut plan.users {
        if u.layout.is_none() {
            u.layout.clone_from(&config.partners.default_layout);
        }
    }
    for p in &plan.partners {
        let json = serde_json::to_string(p).map_err(|e| crate::store::StoreError::Corrupt {
            key: format!("partner:{}", p.id),
            reason: e.to_string(),
        })?;
        store.save_record(super::PARTNER, &p.id, &json).await?;
    }
    for u in &plan.users {
        let json = serde_json::to_string(u).map_err(|e| crate::store::StoreError::Corrupt {
            key: format!("user:{}", u.id),
            reason: e.to_string(),
        })?;
        store.save_user(&u.id, &json).await?;
        store
            .publish(&StoreEvent::UserChanged {
                user_id: u.id.clone(),
            })
            .await?;
    }
    if !plan.partners.is_empty() {
        store
            .publish(&StoreEvent::RecordsChanged {
                kind: super::PARTNER.to_string(),
            })
            .await?;
    }
    Ok(Report {
        partners_saved: plan.partners.len(),
        users_saved: plan.users.len(),
        skipped: plan.skipped,
    })
}

/// Whether the users `plan` gives a Full seat for the first time fit in
/// the seats left (an import is refused whole rather than half-seated).
pub fn check_seats<'a>(
    plan: &Plan,
    existing: impl Iterator<Item = &'a User> + Clone,
    total: Option<u64>,
) -> Result<(), super::PartnerError> {
    let Some(total) = total else { return Ok(()) };
    let used = existing
        .clone()
        .filter(|u| super::holds_full_seat(u))
        .count() as u64;
    let newly = plan
        .users
        .iter()
        .filter(|u| super::holds_full_seat(u))
        .filter(|u| {
            !existing
                .clone()
                .any(|e| e.id == u.id && super::holds_full_seat(e))
        })
        .count() as u64;
    if used + newly > total {
        return Err(super::PartnerError::SeatsFull { used, total });
    }
    Ok(())
}

fn check_row(row: &Row) -> Result<(), String> {
    let safe = |s: &str| !s.is_empty() && s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b',');
    if !safe(&row.partner_id) {
        return Err("partner_id must be non-empty visible ASCII without spaces or commas".into());
    }
    if row.partner_name.is_empty() {
        return Err("partner_name is empty".into());
    }
    if row.user_name.is_empty() {
        return Err("user_name is empty".into());
    }
    if !row.user_email.contains('@') || !safe(&row.user_email) {
        return Err(format!("`{}` is not an email address", row.user_email));
    }
    if let Some(bad) = ids(&row.company_ids)
        .chain(ids(&row.relationship_ids))
        .find(|id| !safe(id))
    {
        return Err(format!("`{bad}` is not a record id"));
    }
    Ok(())
}

fn ids(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split([';', '|'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "partner_id,partner_name,user_name,user_email,company_ids\n\
p-acme,Acme Partners,Anna Acme,Anna@Acme.test,co-106;co-107\n\
p-acme,Acme Partners,Arlo Acme,arlo@acme.test,co-108\n\
p-new,New Partner,Nia New,nia@new.test,\n";

    fn none_p(_: &str) -> Option<Partner> {
        None
    }
    fn none_u(_: &str) -> Option<User> {
        None
    }

    #[test]
    fn rows_become_partners_with_the_union_of_their_assignments_and_users() {
        let p = plan(GOOD.as_bytes(), false, &none_p, &none_u).unwrap();
        assert_eq!(p.partners.len(), 2);
        let acme = &p.partners[0];
        assert_eq!(acme.id, "p-acme");
        assert_eq!(
            acme.companies.iter().cloned().collect::<Vec<_>>(),
            ["co-106", "co-107", "co-108"]
        );
        assert_eq!(p.users.len(), 3);
        let anna = p
            .users
            .iter()
            .find(|u| u.email == "anna@acme.test")
            .unwrap();
        assert_eq!(anna.partner.as_deref(), Some("p-acme"));
        assert_eq!(anna.licence, Licence::Full);
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line_and_nothing_is_imported() {
        let csv = "partner_id,partner_name,user_name,user_email,company_ids\n\
p-acme,Acme Partners,Anna,anna@acme.test,co-1\n\
,Nobody,X,x@y.test,\n\
p-acme,Acme Partners,Bad Mail,not-an-email,\n\
p-acme,Other Name,Cy,cy@acme.test,\n\
p-b,B,Dee,dee@b.test,co 9\n\
p-c,C,Eve,eve@c.test\n";
        let Err(ImportError::BadRows(errs)) = plan(csv.as_bytes(), false, &none_p, &none_u) else {
            panic!("bad rows accepted")
        };
        let lines: Vec<u64> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7], "{errs:?}");
        assert!(errs[0].reason.contains("partner_id"));
        assert!(errs[1].reason.contains("not an email"));
        assert!(errs[2].reason.contains("named `Acme Partners` elsewhere"));
        assert!(errs[3].reason.contains("`co 9`"));

        let skipped = plan(csv.as_bytes(), true, &none_p, &none_u).unwrap();
        assert_eq!(skipped.users.len(), 1);
        assert_eq!(skipped.skipped.len(), 5);
    }

    #[test]
    fn importing_the_same_file_again_changes_nothing() {
        let first = plan(GOOD.as_bytes(), false, &none_p, &none_u).unwrap();
        let partners = first.partners.clone();
        let users = first.users.clone();
        let partner_of = |id: &str| partners.iter().find(|p| p.id == id).cloned();
        let user_by_email = |e: &str| users.iter().find(|u| u.email == e).cloned();
        let again = plan(GOOD.as_bytes(), false, &partner_of, &user_by_email).unwrap();
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn a_file_without_the_columns_is_refused_whole() {
        assert!(matches!(
            plan(b"a,b\n1,2\n", false, &none_p, &none_u),
            Err(ImportError::NotCsv(_))
        ));
    }
}
