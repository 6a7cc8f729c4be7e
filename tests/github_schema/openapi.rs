//! GitHub's REST API as its published OpenAPI description (`@octokit/openapi`) states it, and an
//! exchange held against it: the operation its method and path name, the query parameters and
//! JSON body of the request, and the status and JSON body of the answer.
//!
//! The description is OpenAPI 3.0, whose schemas are close to JSON Schema draft 4 but not the
//! same; [`json_schema`] converts one (`nullable`, OpenAPI-only keywords, `$ref`s made absolute)
//! so that the `jsonschema` crate can validate against it, with every component schema
//! registered once as one document.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Registry, ValidationError, Validator};
use serde_json::{Map, Value, json};

use super::exchanges::Exchange;
use super::report::{Failure, shorten};

/// Where the converted component schemas are registered; every converted `$ref` points here.
const COMPONENTS_URI: &str = "json-schema:///github-openapi.json";

/// The REST API's description, with a validator compiled per schema on first use.
pub struct RestApi {
    description: Description,
    schemas: Schemas,
}

/// The description as published: its paths, operations and components.
struct Description {
    spec: Value,
}

/// The component schemas, converted and registered, and a validator per schema used.
struct Schemas {
    registry: Registry<'static>,
    validators: HashMap<String, Validator>,
}

/// An operation of the description: `GET /repos/{owner}/{repo}` and its definition.
struct Operation<'a> {
    name: String,
    definition: &'a Value,
    /// The parameters of the path and of the operation, `$ref`s resolved.
    parameters: Vec<&'a Value>,
}

impl RestApi {
    /// Load the description from `api.github.com.json`.
    pub fn load(path: &Path) -> Result<RestApi, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let spec: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        Self::from_spec(spec)
    }

    pub fn from_spec(spec: Value) -> Result<RestApi, String> {
        if !spec["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.0"))
        {
            return Err(format!(
                "expected an OpenAPI 3.0 description, found openapi = {}",
                spec["openapi"]
            ));
        }
        let schemas: Map<String, Value> = spec["components"]["schemas"]
            .as_object()
            .ok_or("the description has no components.schemas")?
            .iter()
            .map(|(name, schema)| (name.clone(), json_schema(schema)))
            .collect();
        let registry = Registry::new()
            .draft(Draft::Draft4)
            .add(COMPONENTS_URI, json!({"components": {"schemas": schemas}}))
            .and_then(|builder| builder.prepare())
            .map_err(|e| format!("registering the component schemas: {e}"))?;
        Ok(RestApi {
            description: Description { spec },
            schemas: Schemas {
                registry,
                validators: HashMap::new(),
            },
        })
    }

    /// Check one exchange; returns the operation it used (`GET /repos/{owner}/{repo}`), when the
    /// description has one, and every way it differs from the description.
    pub fn check(&mut self, exchange: &Exchange) -> (Option<String>, Vec<Failure>) {
        let description = &self.description;
        let schemas = &mut self.schemas;
        let Some(operation) = description.operation(&exchange.method, &exchange.path) else {
            let failure = Failure::new(
                "operation",
                &exchange.path,
                "no operation",
                format!(
                    "GitHub's REST API has no operation {} {}",
                    exchange.method, exchange.path
                ),
            );
            return (None, vec![failure]);
        };
        let mut failures = Vec::new();
        let name = operation.name.clone();
        let query = query_failures(&operation, exchange.query.as_deref());
        let checks = [
            query.1,
            query_value_failures(schemas, &operation, &query.0),
            request_body_failures(schemas, description, &operation, exchange),
            response_failures(schemas, description, &operation, exchange),
        ];
        for found in checks {
            failures.extend(found);
        }
        (Some(name), failures)
    }
}

/// The last `n` segments of `path`, as one string.
fn path_rest(path: &str, n: usize) -> &str {
    let trimmed = path.trim_matches('/');
    let mut start = trimmed.len();
    for _ in 0..n {
        start = trimmed[..start].rfind('/').map_or(0, |i| i);
        if start == 0 {
            break;
        }
    }
    trimmed[start..].trim_start_matches('/')
}

impl Description {
    /// The operation for `method` and a concrete `path`: of the path templates that match, the
    /// one whose literal segments come first (`/issues/comments/{id}` before
    /// `/issues/{number}`).
    fn operation(&self, method: &str, path: &str) -> Option<Operation<'_>> {
        let method = method.to_ascii_lowercase();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut best: Option<(Vec<bool>, &str, &Value)> = None;
        for (template, item) in self.spec["paths"].as_object()? {
            let Some(definition) = item.get(&method) else {
                continue;
            };
            let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
            // A file's `{path}` at the end (the contents API's) spans segments: `a/b.toml`.
            let spans_rest = parts.last() == Some(&"{path}");
            let segments: Vec<&str> = if spans_rest && segments.len() > parts.len() {
                let (head, rest) = segments.split_at(parts.len() - 1);
                let mut joined = head.to_vec();
                joined.push(path_rest(path, rest.len()));
                joined
            } else {
                segments.clone()
            };
            if parts.len() != segments.len() {
                continue;
            }
            let mut literal = Vec::with_capacity(parts.len());
            let matches = parts.iter().zip(&segments).all(|(part, segment)| {
                let is_param = part.starts_with('{') && part.ends_with('}');
                literal.push(!is_param);
                if is_param {
                    !segment.is_empty()
                } else {
                    part == segment
                }
            });
            if matches && best.as_ref().is_none_or(|(b, _, _)| literal > *b) {
                best = Some((literal, template, definition));
            }
        }
        let (_, template, definition) = best?;
        let item = &self.spec["paths"][template];
        let parameters = [&item["parameters"], &definition["parameters"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| self.resolve(p))
            .collect();
        Some(Operation {
            name: format!("{} {template}", method.to_ascii_uppercase()),
            definition,
            parameters,
        })
    }

    /// Follow a `$ref` into the description (`#/components/parameters/per-page`).
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
            Some(pointer) => self.spec.pointer(pointer).unwrap_or(&Value::Null),
            None => value,
        }
    }
}

impl Schemas {
    /// Validate `instance` against an OpenAPI `schema`, compiled once under `key`.
    fn validate(
        &mut self,
        key: &str,
        schema: &Value,
        instance: &Value,
        part: &'static str,
    ) -> Vec<Failure> {
        if !self.validators.contains_key(key) {
            let built = jsonschema::options()
                .with_draft(Draft::Draft4)
                .with_registry(&self.registry)
                .offline()
                .build(&json_schema(schema));
            match built {
                Ok(validator) => {
                    self.validators.insert(key.to_string(), validator);
                }
                Err(e) => {
                    return vec![Failure::new(
                        part,
                        "",
                        "schema",
                        format!("the description's schema for {key} does not compile: {e}"),
                    )];
                }
            }
        }
        let validator = &self.validators[key];
        let mut failures = Vec::new();
        // The required properties an object lacks, one failure per object: (at, rule) → names.
        let mut missing: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for error in validator.iter_errors(instance) {
            innermost(&error, &mut |e| {
                let at = e.instance_path().as_str().to_string();
                let rule = e.schema_path().as_str().to_string();
                match e.kind() {
                    ValidationErrorKind::Required { property } => missing
                        .entry((at, rule))
                        .or_default()
                        .push(property.to_string()),
                    _ => failures.push(Failure::new(part, &at, &rule, shorten(&e.to_string()))),
                }
            });
        }
        for ((at, rule), names) in missing {
            let message = format!("required properties missing: {}", names.join(", "));
            failures.push(Failure::new(part, &at, &rule, message));
        }
        failures
    }
}

/// Each query value against its parameter's schema (`per_page=100` is an integer,
/// `state=open` one of the states).
fn query_value_failures(
    schemas: &mut Schemas,
    operation: &Operation<'_>,
    pairs: &[(String, String)],
) -> Vec<Failure> {
    let mut failures = Vec::new();
    for (name, text) in pairs {
        let Some(parameter) = operation
            .parameters
            .iter()
            .find(|p| p["in"] == "query" && p["name"] == name.as_str())
        else {
            continue;
        };
        let schema = &parameter["schema"];
        let value = match schema["type"].as_str() {
            Some("integer" | "number") => serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_number)
                .unwrap_or_else(|| text.as_str().into()),
            Some("boolean") => match text.as_str() {
                "true" => true.into(),
                "false" => false.into(),
                _ => text.as_str().into(),
            },
            _ => text.as_str().into(),
        };
        let key = format!("{} query {name}", operation.name);
        let schema = schema.clone();
        failures.extend(
            schemas
                .validate(&key, &schema, &value, "request query")
                .into_iter()
                .map(|f| Failure {
                    at: name.clone(),
                    ..f
                }),
        );
    }
    failures
}

fn request_body_failures(
    schemas: &mut Schemas,
    description: &Description,
    operation: &Operation<'_>,
    exchange: &Exchange,
) -> Vec<Failure> {
    let request_body = description
        .resolve(&operation.definition["requestBody"])
        .clone();
    let sent = &exchange.request_body;
    if request_body.is_null() {
        return if sent.is_null() {
            vec![]
        } else {
            vec![Failure::new(
                "request body",
                "",
                "no request body",
                "the operation takes no request body, and one was sent",
            )]
        };
    }
    if sent.is_null() {
        return if request_body["required"] == true {
            vec![Failure::new(
                "request body",
                "",
                "requestBody.required",
                "the operation requires a JSON body, and none was sent",
            )]
        } else {
            vec![]
        };
    }
    let mut failures = Vec::new();
    if !is_json(exchange.request_content_type.as_deref()) {
        failures.push(Failure::new(
            "request body",
            "",
            "content-type",
            format!(
                "a JSON body was sent as {:?}",
                exchange.request_content_type.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    let Some(schema) = request_body["content"]["application/json"].get("schema") else {
        failures.push(Failure::new(
            "request body",
            "",
            "content",
            "the operation takes no application/json body",
        ));
        return failures;
    };
    let key = format!("{} request", operation.name);
    failures.extend(schemas.validate(&key, &schema.clone(), sent, "request body"));
    failures
}

fn response_failures(
    schemas: &mut Schemas,
    description: &Description,
    operation: &Operation<'_>,
    exchange: &Exchange,
) -> Vec<Failure> {
    let status = exchange.status.to_string();
    let responses = &operation.definition["responses"];
    let documented = responses.get(&status).or_else(|| responses.get("default"));
    let Some(documented) = documented else {
        return undocumented_status_failures(exchange);
    };
    let documented = description.resolve(documented).clone();
    let Some(schema) = documented["content"]["application/json"].get("schema") else {
        // No JSON body documented (a redirect, 204): nothing to hold the body to.
        return vec![];
    };
    if !is_json(exchange.response_content_type.as_deref()) {
        return vec![Failure::new(
            "response body",
            "",
            "content-type",
            format!(
                "GitHub documents a JSON body for {status}; the answer was {:?}",
                exchange
                    .response_content_type
                    .as_deref()
                    .unwrap_or("(no content-type)")
            ),
        )];
    }
    let key = format!("{} response {status}", operation.name);
    let mut failures = schemas.validate(
        &key,
        &schema.clone(),
        &exchange.response_body,
        "response body",
    );
    failures.retain(|f| !github_sends_null_here(&operation.name, &f.at, &exchange.response_body));
    failures
}

/// Where GitHub's answers hold a null its published description does not allow, with the
/// reason it is known: (operation, place in the response body, why). Only a null is accepted
/// there; any other value is held to the description.
const NULLS_GITHUB_SENDS: &[(&str, &str, &str)] = &[(
    "GET /repos/{owner}/{repo}/pulls/{pull_number}",
    "/head/repo",
    "a pull request whose head repository (a fork) was deleted has `head.repo: null`, as GitHub's \
     webhook payloads for pull requests also show; the REST description marks it required",
)];

fn github_sends_null_here(operation: &str, at: &str, body: &Value) -> bool {
    NULLS_GITHUB_SENDS
        .iter()
        .any(|(op, place, _)| *op == operation && *place == at)
        && body.pointer(at).is_some_and(Value::is_null)
}

/// The query string's pairs, and the failures of their names: a parameter the operation does not
/// declare, or a required one missing.
fn query_failures(
    operation: &Operation<'_>,
    query: Option<&str>,
) -> (Vec<(String, String)>, Vec<Failure>) {
    let pairs: Vec<(String, String)> = match query {
        Some(query) => reqwest::Url::parse(&format!("http://query.invalid/?{query}"))
            .map(|url| url.query_pairs().into_owned().collect())
            .unwrap_or_default(),
        None => vec![],
    };
    let declared: Vec<&Value> = operation
        .parameters
        .iter()
        .copied()
        .filter(|p| p["in"] == "query")
        .collect();
    let mut failures = Vec::new();
    for (name, _) in &pairs {
        if !declared.iter().any(|p| p["name"] == name.as_str()) {
            failures.push(Failure::new(
                "request query",
                name,
                "unknown parameter",
                format!("`{name}` is not a query parameter of {}", operation.name),
            ));
        }
    }
    for parameter in declared.iter().filter(|p| p["required"] == true) {
        let name = parameter["name"].as_str().unwrap_or_default();
        if !pairs.iter().any(|(n, _)| n == name) {
            failures.push(Failure::new(
                "request query",
                name,
                "required parameter",
                format!("the required query parameter `{name}` is missing"),
            ));
        }
    }
    (pairs, failures)
}

/// A status the operation does not document. GitHub answers any operation with errors it does not
/// list for each (401 for bad credentials, 500 when it fails, 403 for a rate limit), always in its
/// generic error shape: a JSON object with a string `message`. So an undocumented error status
/// (4xx or 5xx) is accepted when, and only when, its body has that shape; an undocumented success
/// or redirect status is a failure.
fn undocumented_status_failures(exchange: &Exchange) -> Vec<Failure> {
    let status = exchange.status;
    if status < 400 {
        return vec![Failure::new(
            "response status",
            "",
            "undocumented status",
            format!("GitHub does not document {status} for this operation"),
        )];
    }
    if exchange.response_body["message"].is_string() {
        return vec![];
    }
    vec![Failure::new(
        "response body",
        "",
        "generic error",
        format!(
            "{status} is not documented for this operation, and its body is not GitHub's \
             generic error (an object with a string `message`): {}",
            shorten(&exchange.response_body.to_string())
        ),
    )]
}

fn is_json(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|c| {
        let media = c.split(';').next().unwrap_or("").trim();
        media == "application/json" || media.ends_with("+json")
    })
}

/// The errors that say what is wrong. An `anyOf`/`oneOf` error is replaced by the errors of its
/// one branch that got past the value's type (the object branch of a nullable object, say), when
/// there is exactly one such branch.
fn innermost<'e>(error: &ValidationError<'e>, report: &mut dyn FnMut(&ValidationError<'_>)) {
    let context = match error.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            context
        }
        _ => return report(error),
    };
    let here = error.instance_path().as_str();
    let past_type: Vec<&Vec<ValidationError<'static>>> = context
        .iter()
        .filter(|branch| {
            !branch.iter().all(|e| {
                matches!(e.kind(), ValidationErrorKind::Type { .. })
                    && e.instance_path().as_str() == here
            })
        })
        .collect();
    match past_type.as_slice() {
        [branch] => {
            for e in branch.iter() {
                innermost(e, report);
            }
        }
        _ => report(error),
    }
}

/// An OpenAPI 3.0 schema as JSON Schema (draft 4): `nullable: true` allows null, OpenAPI-only
/// keywords are dropped, and `$ref: #/components/schemas/x` points into the registered
/// components. Subschemas are converted keyword by keyword, so a property named like a keyword
/// (`nullable`, `example`) stays a property.
pub fn json_schema(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        // `additionalProperties: true`, say.
        return schema.clone();
    };
    let mut out = Map::new();
    for (keyword, value) in object {
        let converted = match keyword.as_str() {
            "nullable" | "example" | "examples" | "discriminator" | "xml" | "externalDocs"
            | "deprecated" | "readOnly" | "writeOnly" => continue,
            "$ref" => match value.as_str().and_then(|r| r.strip_prefix('#')) {
                Some(pointer) => format!("{COMPONENTS_URI}#{pointer}").into(),
                None => value.clone(),
            },
            "properties" | "patternProperties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, s)| (name.clone(), json_schema(s)))
                    .collect(),
            ),
            "items" | "additionalProperties" | "not" => json_schema(value),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(json_schema)
                    .collect(),
            ),
            _ => value.clone(),
        };
        out.insert(keyword.clone(), converted);
    }
    if object.get("nullable") == Some(&Value::Bool(true)) {
        allow_null(out)
    } else {
        Value::Object(out)
    }
}

/// A schema that also accepts null: `null` added to its `type` (and `enum`), or, where the schema
/// is a reference or a combination, `anyOf` null or the schema.
fn allow_null(mut schema: Map<String, Value>) -> Value {
    let combined = ["$ref", "allOf", "anyOf", "oneOf"]
        .iter()
        .any(|k| schema.contains_key(*k));
    if combined {
        return json!({"anyOf": [{"type": "null"}, schema]});
    }
    if let Some(Value::String(t)) = schema.get("type") {
        let t = t.clone();
        schema.insert("type".into(), json!([t, "null"]));
    }
    if let Some(Value::Array(values)) = schema.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
    Value::Object(schema)
}
