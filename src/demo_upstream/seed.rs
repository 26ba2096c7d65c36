//! The data a fresh demo app starts with.
//!
//! It contains the example from the Data Permissions document ("Account 100"
//! with "Product A" and "Spark" relationships worked by business units BU1
//! and BU2) and two partner organisations with through-partner customers,
//! so that partner access, data-permission rules and privacy redaction can all
//! be demonstrated against it. Ids the gateway relies on are in `seed_ids.rs`.

use super::data::{
    Activity, Collection, Company, Contact, Cta, Lead, Partner, Relationship, RelationshipType,
    Report, Store,
};
use super::seed_ids::*;

/// id, name, industry, arr, partner ("" for none), csm, health, stage.
type CompanyRow = (
    &'static str,
    &'static str,
    &'static str,
    u64,
    &'static str,
    &'static str,
    u8,
    &'static str,
);
/// id, company, name, type, partner, business unit, status, arr.
type RelationshipRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    u64,
);
/// id, name, company, relationship ("" for company level), owner, status,
/// priority, due date.
type CtaRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);
/// id, company, relationship, subject, kind, author, date, note.
type ActivityRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// Builds a fresh store holding the seed data.
pub(crate) fn seed() -> Store {
    Store {
        partners: Collection::from_seed(partners()),
        companies: Collection::from_seed(companies()),
        relationship_types: Collection::from_seed(relationship_types()),
        relationships: Collection::from_seed(relationships()),
        ctas: Collection::from_seed(ctas()),
        contacts: Collection::from_seed(contacts()),
        leads: Collection::from_seed(leads()),
        reports: Collection::from_seed(reports()),
        activities: Collection::from_seed(activities()),
    }
}

fn s(v: &str) -> String {
    v.to_owned()
}

fn opt(v: &str) -> Option<String> {
    if v.is_empty() {
        None
    } else {
        Some(v.to_owned())
    }
}

fn partners() -> Vec<Partner> {
    vec![
        Partner {
            id: s(PARTNER_ACME),
            name: s("Acme Partners"),
            tier: s("Gold"),
        },
        Partner {
            id: s(PARTNER_GLOBEX),
            name: s("Globex Channel"),
            tier: s("Silver"),
        },
    ]
}

fn companies() -> Vec<Company> {
    #[rustfmt::skip]
    let rows: [CompanyRow; 12] = [
        (ACCOUNT_100, "Account 100", "Software", 1_200_000, "", "Dana Whitfield", 72, "Adopting"),
        ("co-101", "Northwind Traders", "Retail", 480_000, "", "Sam Ortega", 64, "Renewal"),
        ("co-102", "Contoso Health", "Healthcare", 910_000, "", "Dana Whitfield", 38, "At risk"),
        ("co-103", "Initech", "Software", 150_000, "", "Priya Natarajan", 81, "Adopting"),
        ("co-104", "Umbrella Logistics", "Logistics", 640_000, "", "Sam Ortega", 55, "Onboarding"),
        ("co-105", "Stark Manufacturing", "Manufacturing", 2_050_000, "", "Priya Natarajan", 90, "Expanding"),
        ("co-106", "Wayne Hospitality", "Hospitality", 330_000, PARTNER_ACME, "Alex Romero", 67, "Adopting"),
        ("co-107", "Tyrell Biotech", "Biotech", 720_000, PARTNER_ACME, "Alex Romero", 42, "At risk"),
        ("co-108", "Soylent Foods", "Food & Beverage", 210_000, PARTNER_ACME, "Jordan Lee", 76, "Onboarding"),
        ("co-109", "Cyberdyne Robotics", "Robotics", 1_500_000, PARTNER_GLOBEX, "Morgan Blake", 58, "Renewal"),
        ("co-110", "Hooli Media", "Media", 390_000, PARTNER_GLOBEX, "Morgan Blake", 85, "Expanding"),
        ("co-111", "Vandelay Imports", "Wholesale", 95_000, PARTNER_GLOBEX, "Casey Kim", 31, "At risk"),
    ];
    rows.iter()
        .map(
            |&(id, name, industry, arr, partner, csm, health, stage)| Company {
                id: s(id),
                name: s(name),
                industry: s(industry),
                arr,
                partner_id: opt(partner),
                csm: s(csm),
                health_score: health,
                stage: s(stage),
            },
        )
        .collect()
}

fn relationship_types() -> Vec<RelationshipType> {
    vec![
        RelationshipType {
            id: s(TYPE_PRODUCT_A),
            name: s("Product A"),
            description: s("Subscriptions of the flagship product"),
        },
        RelationshipType {
            id: s(TYPE_SPARK),
            name: s("Spark"),
            description: s("The Spark analytics add-on"),
        },
        RelationshipType {
            id: s(TYPE_PREMIUM_SUPPORT),
            name: s("Premium Support"),
            description: s("Premium support engagements"),
        },
    ]
}

fn relationships() -> Vec<Relationship> {
    #[rustfmt::skip]
    let rows: [RelationshipRow; 12] = [
        (REL_ACCOUNT_100_PRODUCT_A, ACCOUNT_100, "Account 100 - Product A", "Product A", "", "BU1", "Active", 800_000),
        (REL_ACCOUNT_100_SPARK, ACCOUNT_100, "Account 100 - Spark", "Spark", "", "BU2", "Active", 300_000),
        (REL_ACCOUNT_100_SPARK_PILOT, ACCOUNT_100, "Account 100 - Spark Pilot", "Spark", "", "BU1", "Trial", 100_000),
        ("rel-4", "co-101", "Northwind - Product A", "Product A", "", "BU1", "Active", 480_000),
        ("rel-5", "co-102", "Contoso - Premium Support", "Premium Support", "", "BU2", "Active", 910_000),
        ("rel-6", "co-103", "Initech - Spark", "Spark", "", "BU2", "Active", 150_000),
        ("rel-7", "co-106", "Wayne Hospitality - Product A", "Product A", PARTNER_ACME, "BU1", "Active", 330_000),
        ("rel-8", "co-107", "Tyrell Biotech - Spark", "Spark", PARTNER_ACME, "BU2", "Active", 720_000),
        ("rel-9", "co-108", "Soylent Foods - Product A", "Product A", PARTNER_ACME, "BU1", "Onboarding", 210_000),
        ("rel-10", "co-109", "Cyberdyne - Spark", "Spark", PARTNER_GLOBEX, "BU2", "Active", 1_500_000),
        ("rel-11", "co-110", "Hooli Media - Product A", "Product A", PARTNER_GLOBEX, "BU1", "Active", 390_000),
        ("rel-12", "co-111", "Vandelay - Premium Support", "Premium Support", PARTNER_GLOBEX, "BU2", "Active", 95_000),
    ];
    rows.iter()
        .map(
            |&(id, company, name, kind, partner, bu, status, arr)| Relationship {
                id: s(id),
                company_id: s(company),
                name: s(name),
                relationship_type: s(kind),
                partner_id: opt(partner),
                business_unit: opt(bu),
                status: s(status),
                arr,
            },
        )
        .collect()
}

fn ctas() -> Vec<Cta> {
    // relationship_type and business_unit are copied from the relationship.
    #[rustfmt::skip]
    let rows: [CtaRow; 13] = [
        ("cta-1", "Product A usage dropped 30%", ACCOUNT_100, REL_ACCOUNT_100_PRODUCT_A, "Dana Whitfield", "Open", "High", "2025-07-15"),
        ("cta-2", "Spark onboarding kickoff", ACCOUNT_100, REL_ACCOUNT_100_SPARK, "Sam Ortega", "Open", "Medium", "2025-07-22"),
        ("cta-3", "Spark pilot success review", ACCOUNT_100, REL_ACCOUNT_100_SPARK_PILOT, "Dana Whitfield", "Work in progress", "Medium", "2025-08-01"),
        ("cta-4", "Account 100 executive business review", ACCOUNT_100, "", "Dana Whitfield", "Open", "Low", "2025-09-10"),
        ("cta-5", "Northwind expansion opportunity", "co-101", "rel-4", "Sam Ortega", "Open", "Medium", "2025-07-30"),
        ("cta-6", "Contoso support escalation follow-up", "co-102", "rel-5", "Dana Whitfield", "Closed", "High", "2025-06-20"),
        ("cta-7", "Initech Spark renewal", "co-103", "rel-6", "Priya Natarajan", "Open", "High", "2025-08-15"),
        ("cta-8", "Wayne Hospitality adoption check-in", "co-106", "rel-7", "Alex Romero", "Open", "Medium", "2025-07-18"),
        ("cta-9", "Tyrell Biotech risk: champion left", "co-107", "rel-8", "Alex Romero", "Open", "High", "2025-07-12"),
        ("cta-10", "Soylent Foods onboarding plan", "co-108", "rel-9", "Jordan Lee", "Work in progress", "Medium", "2025-08-05"),
        ("cta-11", "Cyberdyne renewal negotiation", "co-109", "rel-10", "Morgan Blake", "Open", "High", "2025-09-01"),
        ("cta-12", "Hooli Media upsell Spark", "co-110", "rel-11", "Morgan Blake", "Closed", "Low", "2025-06-30"),
        ("cta-13", "Vandelay support health check", "co-111", "rel-12", "Casey Kim", "Open", "Medium", "2025-07-25"),
    ];
    let rels = relationships();
    rows.iter()
        .map(|&(id, name, company, rel, owner, status, priority, due)| {
            let linked = rels.iter().find(|r| r.id == rel);
            Cta {
                id: s(id),
                name: s(name),
                company_id: s(company),
                relationship_id: opt(rel),
                relationship_type: linked.map(|r| r.relationship_type.clone()),
                owner: s(owner),
                status: s(status),
                priority: s(priority),
                due_date: s(due),
                business_unit: linked.and_then(|r| r.business_unit.clone()),
            }
        })
        .collect()
}

fn contacts() -> Vec<Contact> {
    // (id, company, name, email, phone, title)
    #[rustfmt::skip]
    let rows: [(&str, &str, &str, &str, &str, &str); 12] = [
        ("ct-1", ACCOUNT_100, "Avery Chen", "avery.chen@account100.example.com", "+1-555-0101", "VP Operations"),
        ("ct-2", ACCOUNT_100, "Blake Moreno", "blake.moreno@account100.example.com", "+1-555-0102", "Spark Admin"),
        ("ct-3", "co-101", "Carmen Diaz", "carmen.diaz@northwind.example.com", "+1-555-0103", "Head of Retail IT"),
        ("ct-4", "co-102", "Devon Patel", "devon.patel@contoso.example.com", "+1-555-0104", "CIO"),
        ("ct-5", "co-103", "Emery Walsh", "emery.walsh@initech.example.com", "+1-555-0105", "Product Owner"),
        ("ct-6", "co-105", "Finley Novak", "finley.novak@stark.example.com", "+1-555-0106", "Plant Manager"),
        ("ct-7", "co-106", "Gray Okafor", "gray.okafor@wayne.example.com", "+1-555-0107", "Guest Experience Lead"),
        ("ct-8", "co-107", "Harper Lindqvist", "harper.lindqvist@tyrell.example.com", "+1-555-0108", "Research Director"),
        ("ct-9", "co-108", "Indigo Sato", "indigo.sato@soylent.example.com", "+1-555-0109", "Operations Analyst"),
        ("ct-10", "co-109", "Jules Ferreira", "jules.ferreira@cyberdyne.example.com", "+1-555-0110", "CTO"),
        ("ct-11", "co-110", "Kai Andersen", "kai.andersen@hooli.example.com", "+1-555-0111", "Marketing Ops"),
        ("ct-12", "co-111", "Logan Mbeki", "logan.mbeki@vandelay.example.com", "+1-555-0112", "Owner"),
    ];
    rows.iter()
        .map(|&(id, company, name, email, phone, title)| Contact {
            id: s(id),
            company_id: s(company),
            name: s(name),
            email: s(email),
            phone: s(phone),
            title: s(title),
        })
        .collect()
}

fn leads() -> Vec<Lead> {
    // (id, name, email, company name, partner, status)
    #[rustfmt::skip]
    let rows: [(&str, &str, &str, &str, &str, &str); 10] = [
        ("ld-1", "Morgan Price", "morgan.price@gotham-hotels.example.org", "Gotham Hotels", PARTNER_ACME, "New"),
        ("ld-2", "Noa Kaplan", "noa.kaplan@oscorp.example.org", "Oscorp", PARTNER_ACME, "Qualified"),
        ("ld-3", "Oakley Brandt", "oakley.brandt@massive-dynamic.example.org", "Massive Dynamic", PARTNER_ACME, "Contacted"),
        ("ld-4", "Parker Quinn", "parker.quinn@aperture.example.org", "Aperture Labs", PARTNER_ACME, "New"),
        ("ld-5", "Quinn Reyes", "quinn.reyes@wonka.example.net", "Wonka Industries", PARTNER_GLOBEX, "Qualified"),
        ("ld-6", "Riley Stone", "riley.stone@prestige.example.net", "Prestige Worldwide", PARTNER_GLOBEX, "New"),
        ("ld-7", "Sage Turner", "sage.turner@gringotts.example.net", "Gringotts", PARTNER_GLOBEX, "Contacted"),
        ("ld-8", "Taylor Udall", "taylor.udall@duff.example.net", "Duff Beverages", PARTNER_GLOBEX, "Lost"),
        ("ld-9", "Uma Varga", "uma.varga@monarch.example.com", "Monarch Solutions", "", "New"),
        ("ld-10", "Vic Whitaker", "vic.whitaker@pied-piper.example.com", "Pied Piper", "", "Qualified"),
    ];
    rows.iter()
        .map(|&(id, name, email, company, partner, status)| Lead {
            id: s(id),
            name: s(name),
            email: s(email),
            company_name: s(company),
            partner_id: opt(partner),
            status: s(status),
        })
        .collect()
}

fn reports() -> Vec<Report> {
    // (id, name, description, source, personal data)
    #[rustfmt::skip]
    let rows: [(&str, &str, &str, &str, bool); 5] = [
        ("rep-1", "ARR by company", "Every company with its ARR, CSM and partner", "companies", false),
        ("rep-2", "Open calls to action", "All CTAs with owner, status and due date", "ctas", false),
        (REPORT_CONTACTS, "Customer contacts", "Names, emails and phone numbers of customer contacts", "contacts", true),
        (REPORT_LEADS, "Partner lead pipeline", "Leads registered by partners", "leads", true),
        ("rep-5", "Relationships by type", "Every relationship with its type and business unit", "relationships", false),
    ];
    rows.iter()
        .map(|&(id, name, description, source, personal)| Report {
            id: s(id),
            name: s(name),
            description: s(description),
            source: s(source),
            contains_personal_data: personal,
        })
        .collect()
}

fn activities() -> Vec<Activity> {
    #[rustfmt::skip]
    let rows: [ActivityRow; 12] = [
        ("act-1", ACCOUNT_100, REL_ACCOUNT_100_PRODUCT_A, "Quarterly usage review", "Meeting", "Dana Whitfield", "2025-06-02", "Usage of Product A fell after the reorganisation; agreed a re-training plan."),
        ("act-2", ACCOUNT_100, REL_ACCOUNT_100_SPARK, "Spark contract signed", "Update", "Sam Ortega", "2025-06-05", "BU2 signed for Spark; kickoff to be scheduled."),
        ("act-3", ACCOUNT_100, REL_ACCOUNT_100_SPARK_PILOT, "Spark pilot started", "Milestone", "Dana Whitfield", "2025-06-09", "BU1 runs a 60 day Spark pilot."),
        ("act-4", "co-101", "rel-4", "Expansion call", "Call", "Sam Ortega", "2025-06-10", "Interested in two more stores."),
        ("act-5", "co-102", "rel-5", "Escalation resolved", "Support", "Dana Whitfield", "2025-06-12", "Root cause fixed; customer satisfied."),
        ("act-6", "co-103", "rel-6", "Renewal prep", "Email", "Priya Natarajan", "2025-06-13", "Sent renewal quote."),
        ("act-7", "co-105", "", "Plant visit", "Meeting", "Priya Natarajan", "2025-06-16", "Toured the new plant; strong adoption."),
        ("act-8", "co-106", "rel-7", "Partner check-in", "Call", "Alex Romero", "2025-06-17", "Acme Partners reports steady adoption."),
        ("act-9", "co-107", "rel-8", "Champion left", "Risk", "Alex Romero", "2025-06-18", "Research director resigned; finding new sponsor."),
        ("act-10", "co-109", "rel-10", "Renewal kickoff", "Meeting", "Morgan Blake", "2025-06-19", "Globex Channel leads the renewal."),
        ("act-11", "co-110", "rel-11", "Upsell closed", "Update", "Morgan Blake", "2025-06-20", "Hooli declined Spark for this year."),
        ("act-12", "co-111", "rel-12", "Support health check booked", "Email", "Casey Kim", "2025-06-23", "Scheduled for next month."),
    ];
    rows.iter()
        .map(
            |&(id, company, rel, name, kind, author, date, note)| Activity {
                id: s(id),
                company_id: s(company),
                relationship_id: opt(rel),
                name: s(name),
                kind: s(kind),
                author: s(author),
                date: s(date),
                note: s(note),
            },
        )
        .collect()
}
