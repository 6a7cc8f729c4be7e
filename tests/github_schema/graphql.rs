//! GitHub's GraphQL API as its published schema (`@octokit/graphql-schema`) states it, and a
//! request to `POST /graphql` held against it: every field selected exists on its type (from the
//! `Query` or `Mutation` root down, through list and non-null wrappers), every argument exists on
//! its field (and every field of an input object literal on its input type), required arguments
//! are given, and the variables sent cover the ones the query declares.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use graphql_parser::query::{self, Definition, OperationDefinition, Selection, SelectionSet};
use graphql_parser::schema::{self, TypeDefinition};
use serde_json::Value;

use super::exchanges::Exchange;
use super::report::{Failure, shorten};

/// The schema, reduced to what the check needs.
pub struct GraphQlSchema {
    types: HashMap<String, TypeDef>,
    query_root: String,
    mutation_root: String,
}

enum TypeDef {
    /// An object or interface type: its fields by name.
    Fields(HashMap<String, FieldDef>),
    /// A union: only `__typename` and fragments select from it.
    Union,
    /// An input object: its fields by name.
    Input(HashMap<String, InputDef>),
    /// A scalar or an enum: nothing is selected from it.
    Leaf,
}

struct FieldDef {
    arguments: HashMap<String, InputDef>,
    /// The named type under any list and non-null wrappers.
    type_name: String,
}

struct InputDef {
    type_name: String,
    /// Non-null without a default: it must be given.
    required: bool,
}

/// What one request's check collects as it walks the query.
struct Walk<'q> {
    fragments: HashMap<&'q str, &'q query::FragmentDefinition<'q, String>>,
    used_variables: HashSet<String>,
    spread: HashSet<String>,
    failures: Vec<Failure>,
}

impl GraphQlSchema {
    /// Load the schema from `schema.graphql`.
    pub fn load(path: &Path) -> Result<GraphQlSchema, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<GraphQlSchema, String> {
        let document = schema::parse_schema::<String>(text)
            .map_err(|e| format!("not a GraphQL schema: {e}"))?;
        let mut types = HashMap::new();
        let (mut query_root, mut mutation_root) = ("Query".to_string(), "Mutation".to_string());
        for definition in document.definitions {
            match definition {
                schema::Definition::SchemaDefinition(roots) => {
                    if let Some(q) = roots.query {
                        query_root = q;
                    }
                    if let Some(m) = roots.mutation {
                        mutation_root = m;
                    }
                }
                schema::Definition::TypeDefinition(definition) => {
                    let (name, def) = match definition {
                        TypeDefinition::Object(t) => (t.name, fields(t.fields)),
                        TypeDefinition::Interface(t) => (t.name, fields(t.fields)),
                        TypeDefinition::Union(t) => (t.name, TypeDef::Union),
                        TypeDefinition::InputObject(t) => {
                            (t.name, TypeDef::Input(inputs(t.fields)))
                        }
                        TypeDefinition::Scalar(t) => (t.name, TypeDef::Leaf),
                        TypeDefinition::Enum(t) => (t.name, TypeDef::Leaf),
                    };
                    types.insert(name, def);
                }
                schema::Definition::TypeExtension(_)
                | schema::Definition::DirectiveDefinition(_) => {}
            }
        }
        for builtin in ["String", "Int", "Float", "Boolean", "ID"] {
            types.entry(builtin.into()).or_insert(TypeDef::Leaf);
        }
        Ok(GraphQlSchema {
            types,
            query_root,
            mutation_root,
        })
    }

    /// Check a `POST /graphql` exchange; returns its name (`POST /graphql mutation
    /// { markPullRequestReadyForReview }`) and every way it differs from the schema.
    pub fn check(&self, exchange: &Exchange) -> (String, Vec<Failure>) {
        let (name, mut failures) = self.check_request(&exchange.request_body);
        failures.extend(response_failures(exchange));
        (name, failures)
    }

    fn check_request(&self, request: &Value) -> (String, Vec<Failure>) {
        let unnamed = "POST /graphql".to_string();
        let Some(text) = request["query"].as_str() else {
            let failure = Failure::new(
                "graphql query",
                "",
                "query",
                "the body has no `query` string",
            );
            return (unnamed, vec![failure]);
        };
        let document = match query::parse_query::<String>(text) {
            Ok(document) => document,
            Err(e) => {
                let failure = Failure::new("graphql query", "", "syntax", shorten(&e.to_string()));
                return (unnamed, vec![failure]);
            }
        };
        let mut walk = Walk {
            fragments: HashMap::new(),
            used_variables: HashSet::new(),
            spread: HashSet::new(),
            failures: Vec::new(),
        };
        for definition in &document.definitions {
            if let Definition::Fragment(f) = definition {
                walk.fragments.insert(f.name.as_str(), f);
            }
        }
        let sent = request["variables"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut names = Vec::new();
        for definition in &document.definitions {
            let Definition::Operation(operation) = definition else {
                continue;
            };
            let (kind, root, declared, selection) = match operation {
                OperationDefinition::SelectionSet(s) => ("query", &self.query_root, &[][..], s),
                OperationDefinition::Query(q) => (
                    "query",
                    &self.query_root,
                    &q.variable_definitions[..],
                    &q.selection_set,
                ),
                OperationDefinition::Mutation(m) => (
                    "mutation",
                    &self.mutation_root,
                    &m.variable_definitions[..],
                    &m.selection_set,
                ),
                OperationDefinition::Subscription(_) => {
                    walk.failures.push(Failure::new(
                        "graphql query",
                        "",
                        "subscription",
                        "GitHub's GraphQL API has no subscriptions",
                    ));
                    continue;
                }
            };
            let fields: Vec<&str> = selection
                .items
                .iter()
                .filter_map(|s| match s {
                    Selection::Field(f) => Some(f.name.as_str()),
                    _ => None,
                })
                .collect();
            names.push(format!("{kind} {{ {} }}", fields.join(" ")));
            self.check_selection(root, selection, root, &mut walk);
            for variable in declared {
                let required = matches!(variable.var_type, query::Type::NonNullType(_))
                    && variable.default_value.is_none();
                let given = sent.get(&variable.name).is_some_and(|v| !v.is_null());
                if required && !given {
                    walk.failures.push(Failure::new(
                        "graphql variables",
                        &variable.name,
                        "required variable",
                        format!(
                            "the query declares ${}, and no value was sent",
                            variable.name
                        ),
                    ));
                }
            }
            for used in &walk.used_variables {
                if !declared.iter().any(|v| &v.name == used) {
                    walk.failures.push(Failure::new(
                        "graphql query",
                        used,
                        "undeclared variable",
                        format!("${used} is used and not declared"),
                    ));
                }
            }
            walk.used_variables.clear();
            walk.spread.clear();
        }
        let name = if names.is_empty() {
            unnamed
        } else {
            format!("POST /graphql {}", names.join("; "))
        };
        (name, walk.failures)
    }

    /// The fields selected from `type_name` (at `path`, for the report).
    fn check_selection<'q>(
        &self,
        type_name: &str,
        selection: &'q SelectionSet<'q, String>,
        path: &str,
        walk: &mut Walk<'q>,
    ) {
        for item in &selection.items {
            match item {
                Selection::Field(field) => self.check_field(type_name, field, path, walk),
                Selection::InlineFragment(fragment) => {
                    let on = match &fragment.type_condition {
                        Some(query::TypeCondition::On(on)) => on.as_str(),
                        None => type_name,
                    };
                    if self.composite(on, path, walk) {
                        self.check_selection(on, &fragment.selection_set, path, walk);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name.as_str();
                    let Some(&fragment) = walk.fragments.get(name) else {
                        walk.failures.push(Failure::new(
                            "graphql query",
                            path,
                            "unknown fragment",
                            format!("...{name} spreads a fragment the query does not define"),
                        ));
                        continue;
                    };
                    if walk.spread.insert(name.to_string()) {
                        let query::TypeCondition::On(on) = &fragment.type_condition;
                        if self.composite(on, path, walk) {
                            self.check_selection(on, &fragment.selection_set, path, walk);
                        }
                    }
                }
            }
        }
    }

    fn check_field<'q>(
        &self,
        type_name: &str,
        field: &'q query::Field<'q, String>,
        path: &str,
        walk: &mut Walk<'q>,
    ) {
        let name = field.name.as_str();
        let here = format!("{path}.{name}");
        for (_, value) in &field.arguments {
            note_variables(value, &mut walk.used_variables);
        }
        if name == "__typename" {
            return;
        }
        let Some(TypeDef::Fields(fields)) = self.types.get(type_name) else {
            walk.failures.push(Failure::new(
                "graphql query",
                &here,
                "field on a union",
                format!("`{type_name}` is a union: its fields are selected through fragments"),
            ));
            return;
        };
        let Some(definition) = fields.get(name) else {
            walk.failures.push(Failure::new(
                "graphql query",
                &here,
                "unknown field",
                format!("`{type_name}` has no field `{name}`"),
            ));
            return;
        };
        for (argument, value) in &field.arguments {
            match definition.arguments.get(argument.as_str()) {
                Some(input) => self.check_value(
                    &input.type_name,
                    value,
                    &format!("{here}({argument})"),
                    walk,
                ),
                None => walk.failures.push(Failure::new(
                    "graphql query",
                    &here,
                    "unknown argument",
                    format!("`{type_name}.{name}` has no argument `{argument}`"),
                )),
            }
        }
        for (argument, input) in &definition.arguments {
            if input.required && !field.arguments.iter().any(|(a, _)| a == argument) {
                walk.failures.push(Failure::new(
                    "graphql query",
                    &here,
                    "required argument",
                    format!("`{type_name}.{name}` requires the argument `{argument}`"),
                ));
            }
        }
        let target = definition.type_name.as_str();
        let leaf = matches!(self.types.get(target), Some(TypeDef::Leaf));
        match (leaf, field.selection_set.items.is_empty()) {
            (true, false) => walk.failures.push(Failure::new(
                "graphql query",
                &here,
                "selection on a leaf",
                format!("`{target}` is a scalar or enum: nothing can be selected from it"),
            )),
            (false, true) => walk.failures.push(Failure::new(
                "graphql query",
                &here,
                "missing selection",
                format!("`{target}` is an object: fields must be selected from it"),
            )),
            (false, false) => self.check_selection(target, &field.selection_set, &here, walk),
            (true, true) => {}
        }
    }

    /// An argument's value: a literal whose input object fields must exist on `type_name`, the
    /// required ones given.
    fn check_value(
        &self,
        type_name: &str,
        value: &query::Value<'_, String>,
        path: &str,
        walk: &mut Walk<'_>,
    ) {
        match value {
            query::Value::List(items) => {
                for item in items {
                    self.check_value(type_name, item, path, walk);
                }
            }
            query::Value::Object(object) => {
                let Some(TypeDef::Input(fields)) = self.types.get(type_name) else {
                    walk.failures.push(Failure::new(
                        "graphql query",
                        path,
                        "object for a non-input type",
                        format!("an object was given where `{type_name}` is expected"),
                    ));
                    return;
                };
                for (key, item) in object {
                    match fields.get(key.as_str()) {
                        Some(input) => {
                            self.check_value(&input.type_name, item, &format!("{path}.{key}"), walk)
                        }
                        None => walk.failures.push(Failure::new(
                            "graphql query",
                            path,
                            "unknown input field",
                            format!("`{type_name}` has no field `{key}`"),
                        )),
                    }
                }
                for (key, input) in fields {
                    if input.required && !object.contains_key(key.as_str()) {
                        walk.failures.push(Failure::new(
                            "graphql query",
                            path,
                            "required input field",
                            format!("`{type_name}` requires the field `{key}`"),
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether `name` is a type fields are selected from; a failure when it is not.
    fn composite(&self, name: &str, path: &str, walk: &mut Walk<'_>) -> bool {
        match self.types.get(name) {
            Some(TypeDef::Fields(_) | TypeDef::Union) => true,
            _ => {
                walk.failures.push(Failure::new(
                    "graphql query",
                    path,
                    "unknown type",
                    format!("`{name}` is not an object, interface or union of the schema"),
                ));
                false
            }
        }
    }
}

/// GraphQL answers 200 with `data` and/or `errors` (each error with a string `message`); any
/// other status follows GitHub's generic error shape, a string `message`.
fn response_failures(exchange: &Exchange) -> Vec<Failure> {
    let body = &exchange.response_body;
    let failure = |rule: &str, message: &str| {
        vec![Failure::new(
            "response body",
            "",
            rule,
            format!("{message}: {}", shorten(&body.to_string())),
        )]
    };
    if exchange.status != 200 {
        return if body["message"].is_string() {
            vec![]
        } else {
            failure(
                "generic error",
                "an error status without GitHub's string `message`",
            )
        };
    }
    let Some(object) = body.as_object() else {
        return failure("graphql response", "a GraphQL answer is a JSON object");
    };
    if !object.contains_key("data") && !object.contains_key("errors") {
        return failure(
            "graphql response",
            "a GraphQL answer has `data` or `errors`",
        );
    }
    if !(body["data"].is_object() || body["data"].is_null()) {
        return failure("graphql response", "`data` is an object or null");
    }
    if let Some(errors) = object.get("errors") {
        let well_formed = errors
            .as_array()
            .is_some_and(|e| e.iter().all(|e| e["message"].is_string()));
        if !well_formed {
            return failure(
                "graphql response",
                "`errors` is a list of objects with a string `message`",
            );
        }
    }
    vec![]
}

/// The variables a value uses (`$id`), wherever they are in it.
fn note_variables(value: &query::Value<'_, String>, used: &mut HashSet<String>) {
    match value {
        query::Value::Variable(name) => {
            used.insert(name.clone());
        }
        query::Value::List(items) => items.iter().for_each(|v| note_variables(v, used)),
        query::Value::Object(object) => object.values().for_each(|v| note_variables(v, used)),
        _ => {}
    }
}

fn fields(fields: Vec<schema::Field<'_, String>>) -> TypeDef {
    TypeDef::Fields(
        fields
            .into_iter()
            .map(|f| {
                let definition = FieldDef {
                    arguments: inputs(f.arguments),
                    type_name: named(&f.field_type).to_string(),
                };
                (f.name, definition)
            })
            .collect(),
    )
}

fn inputs(values: Vec<schema::InputValue<'_, String>>) -> HashMap<String, InputDef> {
    values
        .into_iter()
        .map(|v| {
            let input = InputDef {
                type_name: named(&v.value_type).to_string(),
                required: matches!(v.value_type, schema::Type::NonNullType(_))
                    && v.default_value.is_none(),
            };
            (v.name, input)
        })
        .collect()
}

/// The named type under list and non-null wrappers.
fn named<'t>(t: &'t schema::Type<'_, String>) -> &'t str {
    match t {
        schema::Type::NamedType(name) => name,
        schema::Type::ListType(inner) | schema::Type::NonNullType(inner) => named(inner),
    }
}
