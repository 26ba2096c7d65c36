//! The legacy app's records and its in-memory store.
//!
//! Every record kind is a plain serde struct so that the JSON API, the CSV
//! exports and the HTML pages all see the same field names — the gateway's
//! permission rules and response filters are written against those names.
//! Unknown fields are rejected so that a typo in a request is reported instead
//! of being silently dropped.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What every stored record kind offers to the generic JSON API.
pub(crate) trait Record:
    Serialize + DeserializeOwned + Clone + Send + Sync + 'static
{
    /// Singular noun used in messages, e.g. "company".
    const NOUN: &'static str;
    /// Prefix of ids the store assigns to new records, e.g. "co-".
    const ID_PREFIX: &'static str;
    /// Field names in display order: CSV columns and allowed list filters.
    const FIELDS: &'static [&'static str];
    /// Whether the API accepts POST/PUT/PATCH/DELETE for this kind.
    const WRITABLE: bool = true;

    fn id(&self) -> &str;
    fn set_id(&mut self, id: String);
    fn name(&self) -> &str;
    fn collection(store: &Store) -> &Collection<Self>;
    fn collection_mut(store: &mut Store) -> &mut Collection<Self>;

    /// Checks a record about to be stored against the rest of the store and
    /// fills in derived fields. The message is shown to the API client.
    fn check(&mut self, _store: &Store) -> Result<(), String> {
        Ok(())
    }
}

/// Implements the mechanical parts of [`Record`].
macro_rules! record_basics {
    ($field:ident) => {
        fn id(&self) -> &str {
            &self.id
        }
        fn set_id(&mut self, id: String) {
            self.id = id;
        }
        fn name(&self) -> &str {
            &self.name
        }
        fn collection(store: &Store) -> &Collection<Self> {
            &store.$field
        }
        fn collection_mut(store: &mut Store) -> &mut Collection<Self> {
            &mut store.$field
        }
    };
}

/// A partner organisation that manages through-partner customers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Partner {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub tier: String,
}

/// A customer company. `partner_id` is set for through-partner customers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Company {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub industry: String,
    /// Annual recurring revenue in whole dollars.
    #[serde(default)]
    pub arr: u64,
    #[serde(default)]
    pub partner_id: Option<String>,
    /// Name of the customer success manager who owns the account.
    #[serde(default)]
    pub csm: String,
    /// 0..=100, shown on the scorecard.
    #[serde(default)]
    pub health_score: u8,
    #[serde(default)]
    pub stage: String,
}

/// A kind of relationship a company can have ("Product A", "Spark").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RelationshipType {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

/// One relationship (product line, engagement) of a company.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Relationship {
    #[serde(default)]
    pub id: String,
    pub company_id: String,
    pub name: String,
    /// Name of a [`RelationshipType`], e.g. "Product A".
    pub relationship_type: String,
    #[serde(default)]
    pub partner_id: Option<String>,
    /// Business unit that works this relationship (BU1, BU2), used by the
    /// Data Permissions example rules.
    #[serde(default)]
    pub business_unit: Option<String>,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub arr: u64,
}

/// A call to action in the Cockpit, on a company and optionally on one of its
/// relationships.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Cta {
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub company_id: String,
    #[serde(default)]
    pub relationship_id: Option<String>,
    /// Copied from the relationship when not given.
    #[serde(default)]
    pub relationship_type: Option<String>,
    #[serde(default)]
    pub owner: String,
    #[serde(default = "default_cta_status")]
    pub status: String,
    #[serde(default)]
    pub priority: String,
    #[serde(default)]
    pub due_date: String,
    /// Copied from the relationship when not given.
    #[serde(default)]
    pub business_unit: Option<String>,
}

fn default_cta_status() -> String {
    "Open".to_owned()
}

/// A person at a customer company — personal data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Contact {
    #[serde(default)]
    pub id: String,
    pub company_id: String,
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub title: String,
}

/// A prospective customer brought in by a partner — personal data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Lead {
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub company_name: String,
    #[serde(default)]
    pub partner_id: Option<String>,
    #[serde(default)]
    pub status: String,
}

/// A saved report; its export is computed from the live data of `source`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Report {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Collection the export reads: "companies", "contacts", ...
    pub source: String,
    pub contains_personal_data: bool,
}

/// A timeline entry: a note about a company.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Activity {
    #[serde(default)]
    pub id: String,
    pub company_id: String,
    #[serde(default)]
    pub relationship_id: Option<String>,
    /// Short subject line; called `name` so generic search works on it.
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub date: String,
    #[serde(default)]
    pub note: String,
}

/// Ordered records of one kind plus the counter for new ids.
#[derive(Debug)]
pub(crate) struct Collection<T> {
    items: Vec<T>,
    next: u64,
}

impl<T: Record> Collection<T> {
    /// Starts numbering new ids after the highest numeric seed id.
    pub fn from_seed(items: Vec<T>) -> Self {
        let highest = items
            .iter()
            .filter_map(|r| r.id().strip_prefix(T::ID_PREFIX)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        Collection {
            items,
            next: highest + 1,
        }
    }

    pub fn all(&self) -> &[T] {
        &self.items
    }

    pub fn get(&self, id: &str) -> Option<&T> {
        self.items.iter().find(|r| r.id() == id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Stores a new record under a fresh id and returns a copy of it.
    pub fn insert_new(&mut self, mut record: T) -> T {
        let mut id = format!("{}{}", T::ID_PREFIX, self.next);
        while self.contains(&id) {
            self.next += 1;
            id = format!("{}{}", T::ID_PREFIX, self.next);
        }
        self.next += 1;
        record.set_id(id);
        self.items.push(record.clone());
        record
    }

    /// Replaces the record with the same id; false when there is none.
    pub fn replace(&mut self, record: T) -> bool {
        match self.items.iter_mut().find(|r| r.id() == record.id()) {
            Some(slot) => {
                *slot = record;
                true
            }
            None => false,
        }
    }

    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|r| r.id() != id);
        self.items.len() != before
    }
}

/// All data of the legacy app. Kept behind one lock by `DemoUpstream`.
#[derive(Debug)]
pub(crate) struct Store {
    pub partners: Collection<Partner>,
    pub companies: Collection<Company>,
    pub relationship_types: Collection<RelationshipType>,
    pub relationships: Collection<Relationship>,
    pub ctas: Collection<Cta>,
    pub contacts: Collection<Contact>,
    pub leads: Collection<Lead>,
    pub reports: Collection<Report>,
    pub activities: Collection<Activity>,
}

impl Store {
    pub fn company_name(&self, id: &str) -> String {
        match self.companies.get(id) {
            Some(c) => c.name.clone(),
            None => format!("unknown company {id}"),
        }
    }

    pub fn partner_name(&self, id: Option<&str>) -> Option<String> {
        let id = id?;
        Some(match self.partners.get(id) {
            Some(p) => p.name.clone(),
            None => format!("unknown partner {id}"),
        })
    }

    fn require_company(&self, id: &str) -> Result<(), String> {
        if self.companies.contains(id) {
            Ok(())
        } else {
            Err(format!("company_id `{id}` does not exist"))
        }
    }

    fn require_partner(&self, id: Option<&str>) -> Result<(), String> {
        match id {
            Some(id) if !self.partners.contains(id) => {
                Err(format!("partner_id `{id}` does not exist"))
            }
            _ => Ok(()),
        }
    }
}

fn require_text(noun: &str, field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        Err(format!("{noun} {field} must not be empty"))
    } else {
        Ok(())
    }
}

fn require_email(value: &str) -> Result<(), String> {
    if value.contains('@') {
        Ok(())
    } else {
        Err(format!("email `{value}` is not an email address"))
    }
}

impl Record for Partner {
    const NOUN: &'static str = "partner";
    const ID_PREFIX: &'static str = "p-";
    const FIELDS: &'static [&'static str] = &["id", "name", "tier"];
    const WRITABLE: bool = false;
    record_basics!(partners);
}

impl Record for Company {
    const NOUN: &'static str = "company";
    const ID_PREFIX: &'static str = "co-";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "name",
        "industry",
        "arr",
        "partner_id",
        "csm",
        "health_score",
        "stage",
    ];
    record_basics!(companies);

    fn check(&mut self, store: &Store) -> Result<(), String> {
        require_text(Self::NOUN, "name", &self.name)?;
        store.require_partner(self.partner_id.as_deref())?;
        if self.health_score > 100 {
            return Err(format!(
                "health_score {} is out of range 0..=100",
                self.health_score
            ));
        }
        Ok(())
    }
}

impl Record for RelationshipType {
    const NOUN: &'static str = "relationship type";
    const ID_PREFIX: &'static str = "rt-";
    const FIELDS: &'static [&'static str] = &["id", "name", "description"];
    record_basics!(relationship_types);

    fn check(&mut self, store: &Store) -> Result<(), String> {
        require_text(Self::NOUN, "name", &self.name)?;
        let taken = store
            .relationship_types
            .all()
            .iter()
            .any(|t| t.name == self.name && t.id != self.id);
        if taken {
            return Err(format!(
                "a relationship type named `{}` already exists",
                self.name
            ));
        }
        Ok(())
    }
}

impl Record for Relationship {
    const NOUN: &'static str = "relationship";
    const ID_PREFIX: &'static str = "rel-";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "company_id",
        "name",
        "relationship_type",
        "partner_id",
        "business_unit",
        "status",
        "arr",
    ];
    record_basics!(relationships);

    fn check(&mut self, store: &Store) -> Result<(), String> {
        require_text(Self::NOUN, "name", &self.name)?;
        store.require_company(&self.company_id)?;
        store.require_partner(self.partner_id.as_deref())?;
        let known = store
            .relationship_types
            .all()
            .iter()
            .any(|t| t.name == self.relationship_type);
        if !known {
            let names: Vec<&str> = store
                .relationship_types
                .all()
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            return Err(format!(
                "relationship_type `{}` is not a known relationship type (known: {})",
                self.relationship_type,
                names.join(", ")
            ));
        }
        Ok(())
    }
}

impl Record for Cta {
    const NOUN: &'static str = "CTA";
    const ID_PREFIX: &'static str = "cta-";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "name",
        "company_id",
        "relationship_id",
        "relationship_type",
        "owner",
        "status",
        "priority",
        "due_date",
        "business_unit",
    ];
    record_basics!(ctas);

    fn check(&mut self, store: &Store) -> Result<(), String> {
        require_text(Self::NOUN, "name", &self.name)?;
        store.require_company(&self.company_id)?;
        let Some(rel_id) = self.relationship_id.as_deref() else {
            return Ok(());
        };
        let Some(rel) = store.relationships.get(rel_id) else {
            return Err(format!("relationship_id `{rel_id}` does not exist"));
        };
        if rel.company_id != self.company_id {
            return Err(format!(
                "relationship `{rel_id}` belongs to company `{}`, not `{}`",
                rel.company_id, self.company_id
            ));
        }
        match &self.relationship_type {
            None => self.relationship_type = Some(rel.relationship_type.clone()),
            Some(t) if *t != rel.relationship_type => {
                return Err(format!(
                    "relationship_type `{t}` does not match relationship `{rel_id}`, which is `{}`",
                    rel.relationship_type
                ))
            }
            Some(_) => {}
        }
        if self.business_unit.is_none() {
            self.business_unit = rel.business_unit.clone();
        }
        Ok(())
    }
}

impl Record for Contact {
    const NOUN: &'static str = "contact";
    const ID_PREFIX: &'static str = "ct-";
    const FIELDS: &'static [&'static str] =
        &["id", "company_id", "name", "email", "phone", "title"];
    record_basics!(contacts);

    fn check(&mut self, store: &Store) -> Result<(), String> {
        require_text(Self::NOUN, "name", &self.name)?;
        require_email(&self.email)?;
        store.require_company(&self.company_id)
    }
}

impl Record for Lead {
    const NOUN: &'static str = "lead";
    const ID_PREFIX: &'static str = "ld-";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "name",
        "email",
        "company_name",
        "partner_id",
        "status",
    ];
    record_basics!(leads);

    fn check(&mut self, store: &Store) -> Result<(), String> {
        require_text(Self::NOUN, "name", &self.name)?;
        require_email(&self.email)?;
        store.require_partner(self.partner_id.as_deref())
    }
}

impl Record for Report {
    const NOUN: &'static str = "report";
    const ID_PREFIX: &'static str = "rep-";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "name",
        "description",
        "source",
        "contains_personal_data",
    ];
    const WRITABLE: bool = false;
    record_basics!(reports);
}

impl Record for Activity {
    const NOUN: &'static str = "activity";
    const ID_PREFIX: &'static str = "act-";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "company_id",
        "relationship_id",
        "name",
        "kind",
        "author",
        "date",
        "note",
    ];
    record_basics!(activities);

    fn check(&mut self, store: &Store) -> Result<(), String> {
        require_text(Self::NOUN, "name", &self.name)?;
        store.require_company(&self.company_id)?;
        match self.relationship_id.as_deref() {
            Some(r) if !store.relationships.contains(r) => {
                Err(format!("relationship_id `{r}` does not exist"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo_upstream::seed::seed;
    use std::collections::BTreeSet;

    /// FIELDS drives CSV columns and filters, so it must match the serde shape.
    fn fields_match<T: Record>(store: &Store) {
        let first = T::collection(store).all().first().cloned();
        let Some(first) = first else {
            panic!("seed has no {}", T::NOUN);
        };
        let value = serde_json::to_value(first).expect("records serialize");
        let keys: BTreeSet<&str> = value
            .as_object()
            .expect("records are objects")
            .keys()
            .map(String::as_str)
            .collect();
        let fields: BTreeSet<&str> = T::FIELDS.iter().copied().collect();
        assert_eq!(keys, fields, "FIELDS of {}", T::NOUN);
    }

    #[test]
    fn fields_lists_match_serialized_shape() {
        let store = seed();
        fields_match::<Partner>(&store);
        fields_match::<Company>(&store);
        fields_match::<RelationshipType>(&store);
        fields_match::<Relationship>(&store);
        fields_match::<Cta>(&store);
        fields_match::<Contact>(&store);
        fields_match::<Lead>(&store);
        fields_match::<Report>(&store);
        fields_match::<Activity>(&store);
    }

    #[test]
    fn seed_records_pass_their_own_checks() {
        fn all_valid<T: Record>(store: &Store) {
            for record in T::collection(store).all() {
                let mut copy = record.clone();
                let before = serde_json::to_value(&copy).expect("serialize");
                copy.check(store)
                    .unwrap_or_else(|e| panic!("{} {}: {e}", T::NOUN, record.id()));
                let after = serde_json::to_value(&copy).expect("serialize");
                assert_eq!(
                    before,
                    after,
                    "seed {} {} is normalised",
                    T::NOUN,
                    record.id()
                );
            }
        }
        let store = seed();
        all_valid::<Company>(&store);
        all_valid::<RelationshipType>(&store);
        all_valid::<Relationship>(&store);
        all_valid::<Cta>(&store);
        all_valid::<Contact>(&store);
        all_valid::<Lead>(&store);
        all_valid::<Activity>(&store);
    }

    #[test]
    fn new_ids_continue_after_the_seed_and_never_collide() {
        let mut store = seed();
        let a = store.companies.insert_new(Company {
            id: String::new(),
            name: "New".into(),
            industry: String::new(),
            arr: 0,
            partner_id: None,
            csm: String::new(),
            health_score: 0,
            stage: String::new(),
        });
        assert_eq!(a.id, "co-112");
        assert!(store.companies.remove("co-112"));
        let b = store.companies.insert_new(a.clone());
        assert_eq!(b.id, "co-113", "ids are not reused after a delete");
    }
}
