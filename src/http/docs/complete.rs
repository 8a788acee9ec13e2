//! What the routes' own descriptions leave out, added to the OpenAPI document: the answers
//! the layers and extractors give every operation (all errors `application/problem+json`,
//! the rate limit's 429 with `Retry-After`), and the rules the server keeps on request
//! fields and query parameters, taken from the constants it checks against.

use serde_json::{json, Value};

use crate::http::{idempotency, storable, subscriptions};
use crate::licensing::MAX_FINGERPRINT_LEN;
use crate::subscriptions::MAX_FEATURES;
use flowlytix_aggregates::catalogue::MAX_ENTITLEMENTS;
use flowlytix_aggregates::subscription::{MAX_DEVICE_LIMIT, MAX_TEXT_LEN};
use utoipa::openapi::OpenApi as OpenApiDocument;

/// The document as the routes describe it, completed with what the layers and extractors
/// add to every operation: their error answers (all `application/problem+json`), the rate
/// limit's 429, and the rule that no text may carry NUL. Worked on as JSON: the rules are
/// about the shape of the document, whatever utoipa types built it.
pub fn complete(openapi: &OpenApiDocument) -> Value {
    let mut document = serde_json::to_value(openapi).unwrap_or(Value::Null);
    complete_json(&mut document);
    document
}

/// No NUL, which no store can hold (`storable::check_text`).
pub const NO_NUL: &str = "^[^\\x00]*$";

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    })
}

fn complete_json(document: &mut Value) {
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            complete_operation(path, method, operation);
        }
    }
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in schemas.iter_mut() {
            if name.ends_with("Request") || name == "DeviceInfo" {
                forbid_nul(schema);
            }
        }
        schemas.insert("StorableValue".into(), storable_value_schema());
    }
}

fn complete_operation(path: &str, method: &str, operation: &mut Value) {
    let secured = operation
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let has_body = operation.get("requestBody").is_some();
    let parameters = operation
        .get("parameters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has_in = |place: &str| parameters.iter().any(|p| p["in"] == place);
    let writes = method != "get";
    let mut added: Vec<(&str, Value)> = vec![(
        "500",
        problem("INTERNAL_ERROR: the failure is logged; its cause is never sent"),
    )];
    let touches_store = !matches!(
        path,
        "/livez" | "/health" | "/.well-known/jwks.json" | "/api/v1/licensing/public-key"
    );
    if touches_store {
        added.push((
            "503",
            problem("SERVICE_UNAVAILABLE: the database does not answer"),
        ));
    }
    if secured {
        added.push((
            "401",
            problem("UNAUTHENTICATED or INVALID_ACCESS_TOKEN: no valid access token"),
        ));
        if writes && path != "/api/v1/auth/logout" {
            added.push((
                "403",
                problem("FORBIDDEN: the admin role is needed; auditors may only read"),
            ));
        }
    }
    if has_body {
        added.push(("400", problem("MALFORMED_JSON: the body is not JSON")));
        added.push(("413", problem("PAYLOAD_TOO_LARGE: over MAX_BODY_BYTES")));
        added.push((
            "415",
            problem("UNSUPPORTED_MEDIA_TYPE: send Content-Type: application/json"),
        ));
        added.push((
            "422",
            problem("INVALID_BODY (wrong types, unknown fields, values no store can hold: NUL, numbers beyond 64-bit integers or ±1e15, arrays and objects nested deeper than 10 levels) or VALIDATION_FAILED"),
        ));
    }
    if has_in("path") {
        added.push(("400", problem("INVALID_PATH: an id is not a UUID")));
        added.push(("404", problem("not found")));
    }
    if has_in("query") {
        added.push((
            "400",
            problem("INVALID_QUERY: a parameter has the wrong type, an unknown value, or NUL"),
        ));
    }
    let rate_limited = path.starts_with("/api/v1/auth/") || path.starts_with("/api/v1/licensing/");
    if rate_limited {
        let mut limited = problem(if path == "/api/v1/auth/login" {
            "RATE_LIMITED: too many requests from this address, or sign-in attempts on this account"
        } else {
            "RATE_LIMITED: too many requests from this address"
        });
        limited["headers"] = json!({"Retry-After": {
            "description": "Seconds to wait before the next request is accepted (at least 1).",
            "required": true,
            "schema": {"type": "integer", "minimum": 1},
        }});
        added.push(("429", limited));
    }
    let command = path.starts_with("/api/v1/subscriptions")
        || path.starts_with("/api/v1/devices")
        || matches!(
            path,
            "/api/v1/licensing/activate"
                | "/api/v1/licensing/refresh"
                | "/api/v1/licensing/deactivate"
                | "/api/v1/licensing/heartbeat"
                | "/api/v1/licensing/checkin"
        );
    if writes && command {
        added.push((
            "409",
            problem("CONCURRENT_MODIFICATION, VERSION_CONFLICT or a rule of the current state"),
        ));
    }
    if writes
        && (path.starts_with("/api/v1/subscriptions/{id}")
            || path.starts_with("/api/v1/devices/{id}"))
    {
        added.push((
            "410",
            problem(
                "SUBSCRIPTION_DELETED: the subscription was deleted; its history stays readable",
            ),
        ));
    }
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    // Every answer that is a problem is served as one.
    for response in responses.values_mut() {
        let is_problem = response
            .pointer("/content/application~1json/schema/$ref")
            .is_some_and(|r| r == "#/components/schemas/Problem");
        if is_problem {
            let description = response["description"].as_str().unwrap_or("").to_owned();
            *response = problem(&description);
        }
    }
    for (status, response) in added {
        match responses.get_mut(status) {
            // An operation's own 429 (a limit of its own, such as the churn limit) keeps its
            // words and gains the rate limit's, and its Retry-After.
            Some(own) if status == "429" => {
                let description = format!(
                    "{}; {}",
                    own["description"].as_str().unwrap_or(""),
                    response["description"].as_str().unwrap_or("")
                );
                own["description"] = json!(description);
                own["headers"] = response["headers"].clone();
            }
            Some(_) => {}
            None => {
                responses.insert(status.into(), response);
            }
        }
    }
    let idempotent = parameters
        .iter()
        .any(|p| p["in"] == "header" && p["name"] == "Idempotency-Key");
    if idempotent {
        for (status, response) in responses.iter_mut() {
            if status.starts_with('2') {
                response["headers"][REPLAYED_HEADER_NAME] = json!({
                    "description": "`true` when this is the first answer to an earlier request with the same Idempotency-Key, given again",
                    "schema": {"type": "string", "enum": ["true"]},
                });
            }
        }
        for (status, text) in IDEMPOTENCY_ANSWERS {
            match responses.get_mut(status) {
                Some(response) => {
                    let description = match response["description"].as_str() {
                        None | Some("") => text.to_owned(),
                        Some(description) => format!("{description}; {text}"),
                    };
                    response["description"] = json!(description);
                }
                None => {
                    responses.insert(status.into(), problem(text));
                }
            }
        }
    }
    if rate_limited {
        // Present while the budget is on (RATE_LIMIT_*_PER_MINUTE above 0).
        for response in responses.values_mut() {
            let Some(answer) = response.as_object_mut() else {
                continue;
            };
            let headers = answer.entry("headers").or_insert_with(|| json!({}));
            if let Some(headers) = headers.as_object_mut() {
                headers.insert("X-RateLimit-Limit".into(), json!({
                    "description": "Requests this client address may send in a burst on this budget (sign-in or licensing).",
                    "schema": {"type": "integer", "minimum": 1},
                }));
                headers.insert(
                    "X-RateLimit-Remaining".into(),
                    json!({
                        "description": "What is left of that burst after this request.",
                        "schema": {"type": "integer", "minimum": 0},
                    }),
                );
            }
        }
    }
    for response in responses.values_mut() {
        if response["description"].as_str().is_none_or(str::is_empty) {
            response["description"] = json!("see the schema");
        }
    }
    if let Some(parameters) = operation
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
    {
        for parameter in parameters.iter_mut() {
            let name = parameter["name"].as_str().unwrap_or("").to_owned();
            let place = parameter_place(parameter).to_owned();
            let Some(schema) = parameter.get_mut("schema") else {
                continue;
            };
            match place.as_str() {
                "query" => {
                    // An optional query parameter is absent, never `null`.
                    if let Some(object) = schema.as_object_mut() {
                        if let Some(types) = object.get("type").and_then(Value::as_array) {
                            let kept: Vec<Value> =
                                types.iter().filter(|t| *t != "null").cloned().collect();
                            if kept.len() == 1 {
                                object.insert("type".into(), kept[0].clone());
                            }
                        }
                    }
                    if let Some(rules) = query_rules(&name) {
                        apply_rules(schema, &rules);
                    }
                    forbid_nul(schema);
                }
                "header" if name.eq_ignore_ascii_case(idempotency::HEADER) => {
                    *schema = json!({"type": "string", "minLength": 1, "maxLength": crate::idempotency::MAX_KEY_LEN, "pattern": idempotency::KEY_PATTERN});
                }
                "header" if name.eq_ignore_ascii_case("if-match") => {
                    *schema = json!({"type": "string", "pattern": subscriptions::IF_MATCH_PATTERN});
                }
                _ => {}
            }
        }
    }
}

const REPLAYED_HEADER_NAME: &str = "Idempotent-Replayed";

/// What the `Idempotency-Key` middleware answers on its own (`http::idempotency`).
const IDEMPOTENCY_ANSWERS: [(&str, &str); 3] = [
    ("400", "INVALID_IDEMPOTENCY_KEY: Idempotency-Key is not 1 to 255 printable ASCII characters, or was sent twice"),
    ("409", "IDEMPOTENCY_KEY_IN_FLIGHT: a request with this Idempotency-Key is still running (see Retry-After); IDEMPOTENCY_RESPONSE_UNREADABLE: it ran, but its first answer can no longer be read"),
    ("422", "IDEMPOTENCY_KEY_REUSED: this Idempotency-Key was used for a different request"),
];

/// Characters Rust's `trim` removes (Unicode White_Space), spelled out: regex engines
/// disagree on what `\s` means.
const WHITE_SPACE: &str =
    "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// Text that is not blank and has no NUL (the aggregates' `check_text`, and fingerprints).
fn non_blank() -> String {
    format!("^[^\\x00]*[^\\x00{WHITE_SPACE}][^\\x00]*$")
}

/// What the server enforces on a request field, by its name, from the constants the server
/// checks against.
fn field_rules(name: &str) -> Option<Value> {
    let text = json!({"minLength": 1, "maxLength": MAX_TEXT_LEN, "pattern": non_blank()});
    let slug = json!({"pattern": "^[a-z0-9_-]{1,64}$"});
    Some(match name {
        "customer_name" | "organization" | "reason" | "name" | "notes" | "platform"
        | "os_version" | "app_version" | "hostname" => text,
        "fingerprint" => {
            json!({"minLength": 1, "maxLength": MAX_FINGERPRINT_LEN, "pattern": non_blank()})
        }
        // The rule `Email::parse` keeps, spelled out as a pattern rather than `format:
        // email`, whose validators each read a different RFC 5322 subset.
        "customer_email" => json!({
            "description": "An email address: one `@`, a domain with a dot inside it, no space or control character; kept trimmed and lowercased.",
            "maxLength": 254,
            "pattern": format!("^[{WHITE_SPACE}]*[^@\\x00-\\x1f\\x7f-\\x9f{WHITE_SPACE}]+@[^@.\\x00-\\x1f\\x7f-\\x9f{WHITE_SPACE}][^@\\x00-\\x1f\\x7f-\\x9f{WHITE_SPACE}]*\\.[^@\\x00-\\x1f\\x7f-\\x9f{WHITE_SPACE}]*[^@.\\x00-\\x1f\\x7f-\\x9f{WHITE_SPACE}][{WHITE_SPACE}]*$"),
        }),
        "plan" | "code" => slug,
        // Catalogue codes (entitlements of a policy, codes to attach).
        "entitlements" | "codes" => {
            json!({"maxItems": MAX_ENTITLEMENTS, "items": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"}})
        }
        "features" => {
            json!({"maxItems": MAX_FEATURES, "items": {"type": "string", "pattern": "^[a-z0-9_-]{1,64}$"}})
        }
        "max_devices" => json!({"minimum": 1, "maximum": MAX_DEVICE_LIMIT}),
        "license_key" => json!({"maxLength": 128, "pattern": NO_NUL}),
        "page" | "per_page" => json!({"minimum": 0, "maximum": u32::MAX}),
        _ => return None,
    })
}

fn parameter_place(parameter: &Value) -> &str {
    parameter["in"].as_str().unwrap_or("")
}

/// What the server enforces on a query parameter, by its name.
fn query_rules(name: &str) -> Option<Value> {
    Some(match name {
        "sort" => {
            let columns = [
                "created_at",
                "updated_at",
                "expires_at",
                "customer_email",
                "plan",
            ];
            let values: Vec<String> = columns
                .iter()
                .flat_map(|c| [c.to_string(), format!("-{c}")])
                .collect();
            json!({"enum": values})
        }
        "page" | "per_page" => json!({"minimum": 0, "maximum": u32::MAX}),
        // 64-bit integers: a larger number is refused as malformed (400 INVALID_QUERY).
        "after" => json!({"minimum": 0, "maximum": i64::MAX}),
        "limit" => json!({"minimum": i64::MIN, "maximum": i64::MAX}),
        _ => return None,
    })
}

/// Merges `rules` into a property's schema; for a nullable one (`anyOf` with null, or a
/// type list), into its non-null part.
fn apply_rules(schema: &mut Value, rules: &Value) {
    let Some(rules) = rules.as_object() else {
        return;
    };
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    for (key, rule) in rules {
        if key == "items" {
            if let Some(items) = object.get_mut("items").and_then(Value::as_object_mut) {
                if let Some(rule) = rule.as_object() {
                    items.extend(rule.clone());
                }
                continue;
            }
        }
        object.insert(key.clone(), rule.clone());
    }
    if let Some(format) = object.get("format").and_then(Value::as_str) {
        // utoipa's int32/int64 formats would bound the range more tightly than the rules.
        if format.starts_with("int") {
            object.remove("format");
        }
    }
}

/// Adds the NUL-free pattern to every string in `schema` that has no format, enum or
/// pattern of its own, the field rules by name, and the storable schema to `metadata`.
fn forbid_nul(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let is_string = match object.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
        _ => false,
    };
    let constrained = ["format", "enum", "pattern", "$ref"]
        .iter()
        .any(|k| object.contains_key(*k));
    if is_string && !constrained {
        object.insert("pattern".into(), json!(NO_NUL));
    }
    if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, property) in properties.iter_mut() {
            if name == "metadata" {
                let nullable = property["type"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "null"));
                *property = metadata_schema(nullable);
                continue;
            }
            if let Some(rules) = field_rules(name) {
                apply_rules(property, &rules);
            }
            forbid_nul(property);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = object.get_mut(key) {
            forbid_nul(inner);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = object.get_mut(key).and_then(Value::as_array_mut) {
            options.iter_mut().for_each(forbid_nul);
        }
    }
}

fn metadata_schema(nullable: bool) -> Value {
    json!({
        "type": if nullable { json!(["object", "null"]) } else { json!("object") },
        "description": "Free-form JSON kept with the subscription: at most 16 KiB, at most 8 levels of objects and arrays below it, \
            keys and strings without NUL, numbers 64-bit integers or decimals strictly between -1e15 and 1e15.",
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": {"$ref": "#/components/schemas/StorableValue"},
    })
}

/// Any JSON value that both stores give back unchanged (see `storable`).
fn storable_value_schema() -> Value {
    json!({
        "description": "A JSON value both stores keep exactly.",
        "anyOf": [
            {"type": "null"},
            {"type": "boolean"},
            {"type": "integer", "minimum": i64::MIN, "maximum": u64::MAX},
            {"type": "number", "exclusiveMinimum": -storable::MAX_DECIMAL, "exclusiveMaximum": storable::MAX_DECIMAL},
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "items": {"$ref": "#/components/schemas/StorableValue"}},
            {"type": "object", "propertyNames": {"pattern": NO_NUL},
             "additionalProperties": {"$ref": "#/components/schemas/StorableValue"}},
        ],
    })
}
