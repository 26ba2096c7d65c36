//! The JSON API: generic CRUD over every record kind, list filters, and the
//! CSV exports that the gateway may block for impersonators.
//!
//! One generic implementation serves all kinds so that they behave the same
//! way — the gateway's permission checks and record filters can then treat
//! `/api/<kind>` and `/api/<kind>/{id}` uniformly.

use http::header::{HeaderValue, LOCATION};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value};

use super::data::{
    Activity, Company, Contact, Cta, Lead, Partner, Record, Relationship, RelationshipType, Report,
    Store,
};
use super::respond::{
    api_data, api_error, api_method_not_allowed, csv_download, csv_from_values, form_pairs,
    no_content, read_body, Identity, Response,
};
use super::DemoUpstream;

/// Largest JSON body the API accepts.
const JSON_BODY_LIMIT: usize = 1024 * 1024;

/// The record kinds reachable under `/api/<segment>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Partners,
    Companies,
    RelationshipTypes,
    Relationships,
    Ctas,
    Contacts,
    Leads,
    Reports,
    Activities,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Partners,
        Kind::Companies,
        Kind::RelationshipTypes,
        Kind::Relationships,
        Kind::Ctas,
        Kind::Contacts,
        Kind::Leads,
        Kind::Reports,
        Kind::Activities,
    ];

    /// Path segment after `/api/`; also the `source` name used by reports.
    pub fn segment(self) -> &'static str {
        match self {
            Kind::Partners => "partners",
            Kind::Companies => "companies",
            Kind::RelationshipTypes => "relationship-types",
            Kind::Relationships => "relationships",
            Kind::Ctas => "ctas",
            Kind::Contacts => "contacts",
            Kind::Leads => "leads",
            Kind::Reports => "reports",
            Kind::Activities => "activities",
        }
    }

    fn from_segment(segment: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.segment() == segment)
    }
}

/// Runs `$body` with `$T` bound to the record type of `$kind`.
macro_rules! for_kind {
    ($kind:expr, $T:ident => $body:expr) => {
        match $kind {
            Kind::Partners => {
                type $T = Partner;
                $body
            }
            Kind::Companies => {
                type $T = Company;
                $body
            }
            Kind::RelationshipTypes => {
                type $T = RelationshipType;
                $body
            }
            Kind::Relationships => {
                type $T = Relationship;
                $body
            }
            Kind::Ctas => {
                type $T = Cta;
                $body
            }
            Kind::Contacts => {
                type $T = Contact;
                $body
            }
            Kind::Leads => {
                type $T = Lead;
                $body
            }
            Kind::Reports => {
                type $T = Report;
                $body
            }
            Kind::Activities => {
                type $T = Activity;
                $body
            }
        }
    };
}

/// A refusal, turned into the API's JSON error shape at the edge.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    error: &'static str,
    detail: String,
}

impl ApiError {
    fn bad_request(detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: "bad request",
            detail: detail.into(),
        }
    }

    fn not_found<T: Record>(id: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            error: "not found",
            detail: format!("no {} with id `{id}`", T::NOUN),
        }
    }

    fn into_response(self, identity: &Identity) -> Response {
        api_error(self.status, self.error, self.detail, identity)
    }
}

/// `/api/<kind>`: list (GET) and create (POST).
pub(crate) async fn collection(
    app: &DemoUpstream,
    kind: Kind,
    req: Request<Incoming>,
    identity: &Identity,
) -> Response {
    for_kind!(kind, T => collection_of::<T>(app, req, identity).await)
}

async fn collection_of<T: Record>(
    app: &DemoUpstream,
    req: Request<Incoming>,
    identity: &Identity,
) -> Response {
    let result = match *req.method() {
        Method::GET | Method::HEAD => Filters::parse::<T>(req.uri().query()).map(|filters| {
            let rows = filtered::<T>(&app.read_store(), &filters);
            api_data(StatusCode::OK, Value::Array(rows), identity)
        }),
        Method::POST if T::WRITABLE => create::<T>(app, req, identity).await,
        _ => {
            let allow = if T::WRITABLE {
                "GET, HEAD, POST"
            } else {
                "GET, HEAD"
            };
            return api_method_not_allowed(req.method(), allow, identity);
        }
    };
    result.unwrap_or_else(|e| e.into_response(identity))
}

/// `/api/<kind>/{id}`: read, replace, update and delete one record.
pub(crate) async fn item(
    app: &DemoUpstream,
    kind: Kind,
    id: &str,
    req: Request<Incoming>,
    identity: &Identity,
) -> Response {
    for_kind!(kind, T => item_of::<T>(app, id, req, identity).await)
}

async fn item_of<T: Record>(
    app: &DemoUpstream,
    id: &str,
    req: Request<Incoming>,
    identity: &Identity,
) -> Response {
    let method = req.method().clone();
    let result = match method {
        Method::GET | Method::HEAD => match T::collection(&app.read_store()).get(id) {
            Some(record) => Ok(api_data(StatusCode::OK, to_json(record), identity)),
            None => Err(ApiError::not_found::<T>(id)),
        },
        Method::PUT | Method::PATCH if T::WRITABLE => {
            let patch = method == Method::PATCH;
            match read_object(req).await {
                Ok(body) => update::<T>(app, id, body, patch)
                    .map(|record| api_data(StatusCode::OK, to_json(&record), identity)),
                Err(e) => Err(e),
            }
        }
        Method::DELETE if T::WRITABLE => {
            if T::collection_mut(&mut app.write_store()).remove(id) {
                Ok(no_content())
            } else {
                Err(ApiError::not_found::<T>(id))
            }
        }
        _ => {
            let allow = if T::WRITABLE {
                "GET, HEAD, PUT, PATCH, DELETE"
            } else {
                "GET, HEAD"
            };
            return api_method_not_allowed(&method, allow, identity);
        }
    };
    result.unwrap_or_else(|e| e.into_response(identity))
}

async fn create<T: Record>(
    app: &DemoUpstream,
    req: Request<Incoming>,
    identity: &Identity,
) -> Result<Response, ApiError> {
    let mut body = read_object(req).await?;
    // Ids are assigned here; a client copying a record back may send one.
    body.remove("id");
    let mut record: T = decode(body)?;
    let stored = {
        let mut store = app.write_store();
        record.check(&store).map_err(ApiError::bad_request)?;
        T::collection_mut(&mut store).insert_new(record)
    };
    let mut response = api_data(StatusCode::CREATED, to_json(&stored), identity);
    let location = format!("/api/{}/{}", segment_of::<T>(), stored.id());
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    Ok(response)
}

/// PUT replaces every field (missing optional fields get their defaults);
/// PATCH changes only the fields given.
fn update<T: Record>(
    app: &DemoUpstream,
    id: &str,
    mut body: Map<String, Value>,
    patch: bool,
) -> Result<T, ApiError> {
    match body.get("id") {
        Some(Value::String(given)) if given == id => {}
        Some(given) => {
            return Err(ApiError::bad_request(format!(
                "the id in the body ({given}) differs from the id in the path (`{id}`); ids cannot be changed"
            )))
        }
        None => {}
    }
    let mut store = app.write_store();
    let Some(existing) = T::collection(&store).get(id) else {
        return Err(ApiError::not_found::<T>(id));
    };
    let mut merged = if patch {
        match to_json(existing) {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    } else {
        Map::new()
    };
    merged.append(&mut body);
    merged.insert("id".to_owned(), Value::String(id.to_owned()));
    let mut record: T = decode(merged)?;
    record.check(&store).map_err(ApiError::bad_request)?;
    T::collection_mut(&mut store).replace(record.clone());
    Ok(record)
}

/// `/api/contacts/export` and `/api/leads/export`: the list, as CSV.
pub(crate) fn export(
    app: &DemoUpstream,
    kind: Kind,
    req: &Request<Incoming>,
    identity: &Identity,
) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return api_method_not_allowed(req.method(), "GET, HEAD", identity);
    }
    let result = for_kind!(kind, T => Filters::parse::<T>(req.uri().query()).map(|filters| {
        let rows = filtered::<T>(&app.read_store(), &filters);
        csv_download(&format!("{}.csv", kind.segment()), csv_from_values(T::FIELDS, &rows))
    }));
    result.unwrap_or_else(|e| e.into_response(identity))
}

/// `/api/reports/{id}/export`: the report's source data, as CSV.
pub(crate) fn report_export(
    app: &DemoUpstream,
    id: &str,
    req: &Request<Incoming>,
    identity: &Identity,
) -> Response {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return api_method_not_allowed(req.method(), "GET, HEAD", identity);
    }
    let store = app.read_store();
    let Some(report) = store.reports.get(id) else {
        return ApiError::not_found::<Report>(id).into_response(identity);
    };
    let Some(kind) = Kind::from_segment(&report.source) else {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "broken report",
            format!("report `{id}` reads unknown source `{}`", report.source),
            identity,
        );
    };
    let csv = for_kind!(kind, T => {
        csv_from_values(T::FIELDS, &filtered::<T>(&store, &Filters::default()))
    });
    csv_download(&format!("{}-{}.csv", report.id, slug(&report.name)), csv)
}

fn slug(name: &str) -> String {
    let lowered: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    lowered
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn segment_of<T: Record>() -> &'static str {
    Kind::ALL
        .into_iter()
        .find(|k| for_kind!(*k, U => U::NOUN == T::NOUN))
        .map(Kind::segment)
        .unwrap_or("unknown")
}

fn to_json<T: Record>(record: &T) -> Value {
    serde_json::to_value(record).unwrap_or(Value::Null)
}

/// Turns a JSON object into a record, naming the offending field on error.
fn decode<T: Record>(object: Map<String, Value>) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(Value::Object(object))
        .map_err(|e| ApiError::bad_request(format!("invalid {}: {e}", T::NOUN)))
}

/// Reads the request body as one JSON object.
async fn read_object(req: Request<Incoming>) -> Result<Map<String, Value>, ApiError> {
    let bytes = read_body(req.into_body(), JSON_BODY_LIMIT)
        .await
        .map_err(|e| ApiError {
            status: e.status(),
            error: "bad request",
            detail: e.to_string(),
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty; expected a JSON object",
        ));
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::bad_request(format!(
            "expected a JSON object, got {}",
            json_type(&other)
        ))),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// List filters from the query string: `field=value` pairs that must all
/// match exactly, and `q=` for a case-insensitive search in the name.
/// Parameters starting with `_` (cache busters) are ignored.
#[derive(Debug, Default)]
struct Filters {
    exact: Vec<(String, String)>,
    search: Option<String>,
}

impl Filters {
    fn parse<T: Record>(query: Option<&str>) -> Result<Filters, ApiError> {
        let mut filters = Filters::default();
        for (key, value) in form_pairs(query.unwrap_or("").as_bytes()) {
            if key.starts_with('_') {
                continue;
            }
            if key == "q" {
                filters.search = Some(value.to_lowercase());
            } else if T::FIELDS.contains(&key.as_str()) {
                filters.exact.push((key, value));
            } else {
                return Err(ApiError::bad_request(format!(
                    "unknown filter `{key}`; filter by q or one of: {}",
                    T::FIELDS.join(", ")
                )));
            }
        }
        Ok(filters)
    }

    fn matches(&self, name: &str, value: &Value) -> bool {
        let search_ok = match &self.search {
            Some(q) => name.to_lowercase().contains(q.as_str()),
            None => true,
        };
        search_ok
            && self
                .exact
                .iter()
                .all(|(field, wanted)| match value.get(field) {
                    None | Some(Value::Null) => wanted.is_empty() || wanted == "null",
                    Some(Value::String(s)) => s == wanted,
                    Some(other) => {
                        let rendered = other.to_string();
                        rendered == *wanted
                    }
                })
    }
}

fn filtered<T: Record>(store: &Store, filters: &Filters) -> Vec<Value> {
    T::collection(store)
        .all()
        .iter()
        .filter_map(|record| {
            let value = to_json(record);
            filters.matches(record.name(), &value).then_some(value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::seed_ids;
    use super::super::tests::{client, get_json, start};
    use serde_json::{json, Value};

    #[test]
    fn slugs_are_file_name_safe() {
        assert_eq!(
            super::slug("Partner lead pipeline!"),
            "partner-lead-pipeline"
        );
    }

    #[tokio::test]
    async fn crud_changes_persist_across_requests() {
        let handle = start();
        let http = client();
        let base = handle.base_url();

        let created = http
            .post(format!("{base}/api/companies"))
            .json(&json!({"name": "Test Co", "industry": "Testing", "arr": 5, "partner_id": "p-acme"}))
            .send()
            .await
            .expect("post");
        assert_eq!(created.status(), 201);
        let location = created.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        let body: Value = created.json().await.expect("json");
        let id = body["data"]["id"].as_str().expect("id").to_owned();
        assert_eq!(location, format!("/api/companies/{id}"));

        let fetched: Value = get_json(&http, format!("{base}/api/companies/{id}")).await;
        assert_eq!(fetched["data"]["name"], "Test Co");
        assert_eq!(fetched["data"]["partner_id"], "p-acme");

        let patched = http
            .patch(format!("{base}/api/companies/{id}"))
            .json(&json!({"arr": 99}))
            .send()
            .await
            .expect("patch");
        assert_eq!(patched.status(), 200);
        let listed: Value = http
            .get(format!("{base}/api/companies?partner_id=p-acme"))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let mine = listed["data"]
            .as_array()
            .expect("list")
            .iter()
            .find(|c| c["id"] == id.as_str())
            .cloned()
            .expect("new company listed under its partner");
        assert_eq!(mine["arr"], 99);
        assert_eq!(mine["name"], "Test Co", "PATCH keeps other fields");

        let put = http
            .put(format!("{base}/api/companies/{id}"))
            .json(&json!({"name": "Renamed"}))
            .send()
            .await
            .expect("put");
        assert_eq!(put.status(), 200);
        let put: Value = put.json().await.expect("json");
        assert_eq!(put["data"]["name"], "Renamed");
        assert_eq!(put["data"]["partner_id"], Value::Null, "PUT replaces");

        let deleted = http
            .delete(format!("{base}/api/companies/{id}"))
            .send()
            .await
            .expect("delete");
        assert_eq!(deleted.status(), 204);
        let gone = http
            .get(format!("{base}/api/companies/{id}"))
            .send()
            .await
            .expect("get");
        assert_eq!(gone.status(), 404);
        let gone: Value = gone.json().await.expect("json");
        assert_eq!(gone["error"], "not found");
        handle.stop();
    }

    #[tokio::test]
    async fn ctas_inherit_type_and_business_unit_from_their_relationship() {
        let handle = start();
        let http = client();
        let base = handle.base_url();
        let created: Value = http
            .post(format!("{base}/api/ctas"))
            .json(&json!({
                "name": "Follow up",
                "company_id": seed_ids::ACCOUNT_100,
                "relationship_id": seed_ids::REL_ACCOUNT_100_SPARK,
            }))
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        assert_eq!(created["data"]["relationship_type"], "Spark");
        assert_eq!(created["data"]["business_unit"], "BU2");
        assert_eq!(created["data"]["status"], "Open");

        let wrong = http
            .post(format!("{base}/api/ctas"))
            .json(&json!({"name": "x", "company_id": "co-101", "relationship_id": "rel-1"}))
            .send()
            .await
            .expect("post");
        assert_eq!(wrong.status(), 400);
        handle.stop();
    }

    #[tokio::test]
    async fn bad_input_gets_400_that_says_what_was_wrong() {
        let handle = start();
        let http = client();
        let base = handle.base_url();
        let cases: [(&str, &str, &str); 6] = [
            ("/api/companies", "{not json", "invalid JSON"),
            ("/api/companies", "", "empty"),
            (
                "/api/companies",
                "[1]",
                "expected a JSON object, got an array",
            ),
            (
                "/api/companies",
                r#"{"name": "x", "arr": "lots"}"#,
                "arr: invalid type",
            ),
            ("/api/companies", r#"{"nmae": "x"}"#, "unknown field `nmae`"),
            (
                "/api/relationships",
                r#"{"company_id": "co-999", "name": "x", "relationship_type": "Spark"}"#,
                "company_id `co-999` does not exist",
            ),
        ];
        for (path, body, expected) in cases {
            let response = http
                .post(format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("post");
            assert_eq!(response.status(), 400, "{body}");
            let error: Value = response.json().await.expect("json error");
            assert_eq!(error["error"], "bad request");
            let detail = error["detail"].as_str().expect("detail");
            assert!(detail.contains(expected), "{body}: {detail}");
        }
        let filter = http
            .get(format!("{base}/api/contacts?colour=red"))
            .send()
            .await
            .expect("get");
        assert_eq!(filter.status(), 400);
        let read_only = http
            .delete(format!("{base}/api/reports/rep-1"))
            .send()
            .await
            .expect("delete");
        assert_eq!(read_only.status(), 405);
        assert_eq!(read_only.headers()["allow"], "GET, HEAD");
        handle.stop();
    }

    #[tokio::test]
    async fn list_filters_select_records() {
        let handle = start();
        let http = client();
        let base = handle.base_url();
        let rels: Value = get_json(
            &http,
            format!(
                "{base}/api/relationships?company_id={}&relationship_type=Spark",
                seed_ids::ACCOUNT_100
            ),
        )
        .await;
        let ids: Vec<&str> = rels["data"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|r| r["id"].as_str())
            .collect();
        assert_eq!(
            ids,
            [
                seed_ids::REL_ACCOUNT_100_SPARK,
                seed_ids::REL_ACCOUNT_100_SPARK_PILOT
            ]
        );
        let direct: Value = get_json(&http, format!("{base}/api/leads?partner_id=")).await;
        assert!(direct["data"]
            .as_array()
            .expect("list")
            .iter()
            .all(|l| l["partner_id"].is_null()));
        handle.stop();
    }

    #[tokio::test]
    async fn exports_are_csv_attachments() {
        let handle = start();
        let http = client();
        let base = handle.base_url();
        for path in [
            "/api/contacts/export".to_owned(),
            "/api/leads/export?partner_id=p-globex".to_owned(),
            format!("/api/reports/{}/export", seed_ids::REPORT_CONTACTS),
        ] {
            let response = http.get(format!("{base}{path}")).send().await.expect("get");
            assert_eq!(response.status(), 200, "{path}");
            assert!(response.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/csv"));
            let disposition = response.headers()["content-disposition"]
                .to_str()
                .expect("ascii")
                .to_owned();
            assert!(
                disposition.starts_with("attachment; filename="),
                "{disposition}"
            );
            let text = response.text().await.expect("body");
            assert!(text.lines().count() > 2, "{path}: {text}");
        }
        let leads = http
            .get(format!("{base}/api/leads/export?partner_id=p-globex"))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        assert!(leads.starts_with("id,name,email,company_name,partner_id,status\r\n"));
        assert_eq!(leads.lines().count(), 5, "header and four Globex leads");
        handle.stop();
    }
}
