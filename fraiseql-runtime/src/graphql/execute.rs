//! One request, answered as the GraphQL spec says, around async-graphql's dynamic
//! executor, which on its own gets four things wrong that clients see:
//!
//! - it evaluates `@skip` / `@include` from the variables sent, not their coerced values
//!   (a variable's default is ignored), and its validation does not see a variable used
//!   by a directive on `__typename` (so it reports it unused);
//! - it merges a selection's fields in the order they finish, not the selection's;
//! - it drops the key of a field that failed instead of making it null and nulling the
//!   nearest nullable parent when the field is non-null;
//! - a selection whose every field is skipped comes back `null`, not `{}`.
//!
//! So before execution the document is parsed here (bounded nesting), the selected
//! operation's variable defaults are filled in, directives on `__typename` are moved
//! onto an equivalent inline fragment and selections left empty by `@skip` / `@include`
//! are marked; after it, `data` is completed against the schema's
//! types with the same document and variables. Errors raised before execution carry
//! `extensions.code` and a bounded message, and are told apart from field errors (the
//! HTTP layer answers them differently).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_graphql::dynamic::TypeRef as Gql;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use async_graphql::parser::Positioned;
use async_graphql::{
    ErrorExtensionValues, Name, PathSegment, Pos, Request, Response, ServerError, ServerResult, ValidationResult,
    Value, Variables,
};

use super::persisted::Refusal;
use super::Built;
use crate::runtime::Runtime;

/// Codes of errors raised before execution (field errors have theirs from the resolvers).
pub(crate) const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
pub(crate) const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
pub(crate) const TOO_DEEP: &str = "QUERY_TOO_DEEP";
pub(crate) const TOO_COMPLEX: &str = "QUERY_TOO_COMPLEX";
pub(crate) const OPERATION_NOT_FOUND: &str = "OPERATION_RESOLUTION_FAILURE";
pub(crate) const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
pub(crate) const BAD_REQUEST: &str = "BAD_REQUEST";
pub(crate) const PERSISTED_QUERY_NOT_FOUND: &str = "PERSISTED_QUERY_NOT_FOUND";
pub(crate) const PERSISTED_QUERY_NOT_SUPPORTED: &str = "PERSISTED_QUERY_NOT_SUPPORTED";

/// The longest error message a response carries; longer ones are cut (a message may
/// quote the document, and a document may be large).
const MAX_MESSAGE: usize = 512;

/// Brackets nested deeper than this are refused before parsing: the parser recurses, and
/// no useful document comes near it (the depth limit of selections is far lower).
const MAX_NESTING: usize = 256;

/// What the schema says of each object type's fields: the types `data` is completed
/// against.
#[derive(Debug, Default)]
pub(crate) struct Shapes {
    pub(crate) objects: HashMap<String, HashMap<String, Gql>>,
    pub(crate) mutation: Option<String>,
}

/// A response, and whether its operation ran (else its errors are request errors, and
/// it has no `data`).
pub(crate) struct Executed {
    pub(crate) response: Response,
    pub(crate) ran: bool,
    /// The HTTP status when the media type does not decide it (a persisted query's miss
    /// is 200 so clients read it; a mutation over GET is 405).
    pub(crate) status: Option<u16>,
}

/// Whether execution started, set by [`Phases`] through the request's data.
#[derive(Clone, Default)]
struct Ran(Arc<AtomicBool>);

/// The extension that codes request errors and notes that execution started.
pub(crate) struct Phases;

impl ExtensionFactory for Phases {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PhasesExtension)
    }
}

struct PhasesExtension;

#[async_trait::async_trait]
impl Extension for PhasesExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        // The document is parsed already: what fails here are the limits on recursion and
        // directives checked right after parsing.
        next.run(ctx, query, variables).await.map_err(|e| {
            let code = if e.message.contains("recursion") { TOO_DEEP } else { TOO_COMPLEX };
            coded(e, code)
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| {
                    let code = if e.message.contains("nested too deep") {
                        TOO_DEEP
                    } else if e.message.contains("too complex") {
                        TOO_COMPLEX
                    } else {
                        VALIDATION_FAILED
                    };
                    coded(e, code)
                })
                .collect()
        })
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Some(ran) = ctx.data_opt::<Ran>() {
            ran.0.store(true, Ordering::Relaxed);
        }
        next.run(ctx, operation_name).await
    }
}

fn coded(mut e: ServerError, code: &str) -> ServerError {
    e.extensions.get_or_insert_with(ErrorExtensionValues::default).set("code", code);
    e
}

fn request_error(message: String, locations: Vec<Pos>, code: &str) -> Executed {
    let mut e = ServerError::new(message, None);
    e.locations = locations;
    Executed { response: Response::from_errors(vec![coded(e, code)]), ran: false, status: None }
}

fn with_status(mut e: Executed, status: u16) -> Executed {
    e.status = Some(status);
    e
}

/// Execute `request` on `built`, spec-conformant (see the module's opening comment);
/// `read_only` (GET) refuses mutations.
pub(crate) async fn execute(rt: &Runtime, built: &Built, mut request: Request, read_only: bool) -> Executed {
    if let Err(refusal) = built.persisted.resolve(&mut request) {
        return refused(refusal);
    }
    execute_resolved(rt, built, request, read_only).await
}

/// The answer to a persisted query that cannot run.
pub(crate) fn refused(refusal: Refusal) -> Executed {
    match refusal {
        Refusal::NotFound => {
            with_status(request_error("PersistedQueryNotFound".into(), Vec::new(), PERSISTED_QUERY_NOT_FOUND), 200)
        }
        Refusal::NotSupported => with_status(
            request_error("PersistedQueryNotSupported".into(), Vec::new(), PERSISTED_QUERY_NOT_SUPPORTED),
            200,
        ),
        Refusal::Bad(m) => with_status(request_error(m, Vec::new(), BAD_REQUEST), 400),
    }
}

/// [`execute`] for a request whose persisted query (if any) was resolved already.
pub(crate) async fn execute_resolved(rt: &Runtime, built: &Built, mut request: Request, read_only: bool) -> Executed {
    let (schema, shapes) = (&built.schema, &built.shapes);
    if request.query.is_empty() {
        return with_status(
            request_error("the request has no `query` (nor a persisted query's hash)".into(), Vec::new(), BAD_REQUEST),
            400,
        );
    }
    if let Some(depth) = too_nested(&request.query) {
        return request_error(
            format!("the document nests brackets {depth} deep or more; at most {MAX_NESTING} are read"),
            Vec::new(),
            TOO_DEEP,
        );
    }
    let mut doc = match async_graphql::parser::parse_query(&request.query) {
        Ok(doc) => doc,
        Err(e) => {
            let locations = e.positions().collect();
            return request_error(parse_message(&e), locations, PARSE_FAILED);
        }
    };
    if let Some(op) = operation(&doc, request.operation_name.as_deref()) {
        if read_only && op.node.ty == OperationType::Mutation {
            return with_status(request_error("mutations are sent with POST".into(), vec![op.pos], BAD_REQUEST), 405);
        }
        // Coerced variables: a variable not sent takes its default; a non-null one with
        // neither is a request error (the executor would find out only while running).
        for def in &op.node.variable_definitions {
            let name = &def.node.name.node;
            let sent = request.variables.get(name).is_some_and(|v| *v != Value::Null);
            match &def.node.default_value {
                Some(default) if !request.variables.contains_key(name) => {
                    request.variables.insert(name.clone(), default.node.clone());
                }
                None if !def.node.var_type.node.nullable && !sent => {
                    return request_error(
                        format!("variable `${name}` of type `{}` needs a value", def.node.var_type.node),
                        vec![def.pos],
                        BAD_USER_INPUT,
                    );
                }
                _ => {}
            }
        }
    }
    lift_typename_directives(&mut doc);
    mark_empty_selections(&mut doc, &request.variables);
    let variables = request.variables.clone();
    let operation_name = request.operation_name.clone();
    let ran = Ran::default();
    request.set_parsed_query(doc.clone());
    let request = request.data(ran.clone());
    let mut response = rt.scope(schema.execute(request)).await;
    let ran = ran.0.load(Ordering::Relaxed);
    if !ran {
        for e in &mut response.errors {
            if e.extensions.as_ref().is_none_or(|x| x.get("code").is_none()) {
                // What fails between validation and execution: choosing the operation.
                *e = coded(std::mem::replace(e, ServerError::new("", None)), OPERATION_NOT_FOUND);
            }
        }
    } else if let Some(op) = operation(&doc, operation_name.as_deref()) {
        add_root_paths(&doc, &mut response);
        let root = match op.node.ty {
            OperationType::Mutation => shapes.mutation.as_deref().unwrap_or("Mutation"),
            _ => "Query",
        };
        let mut c =
            Completer { shapes, doc: &doc, variables: &variables, errors: &mut response.errors, path: Vec::new() };
        let data = std::mem::take(&mut response.data);
        response.data = c.object(root, &[&op.node.selection_set.node], data);
        // Every error carries a code: those the executor raised itself are internal.
        for e in &mut response.errors {
            if e.extensions.as_ref().is_none_or(|x| x.get("code").is_none()) {
                if e.message.starts_with("internal: non-null types require a return value") {
                    let field = match e.path.last() {
                        Some(PathSegment::Field(f)) => format!("`{f}`"),
                        _ => "an item".to_string(),
                    };
                    e.message = format!("{field} has no value in the data, but its type is non-null");
                }
                *e = coded(std::mem::replace(e, ServerError::new("", None)), "INTERNAL");
            }
        }
    }
    for e in &mut response.errors {
        bound(&mut e.message);
    }
    Executed { response, ran, status: None }
}

/// The selected operation: by name, else the only one.
fn operation<'d>(doc: &'d ExecutableDocument, name: Option<&str>) -> Option<&'d Positioned<OperationDefinition>> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(n)) => ops.get(n),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        _ => None,
    }
}

/// How deep brackets nest outside strings and comments, when deeper than
/// [`MAX_NESTING`].
fn too_nested(query: &str) -> Option<usize> {
    let (mut depth, mut in_string, mut in_comment, mut escaped) = (0usize, false, false, false);
    for b in query.bytes() {
        if in_comment {
            in_comment = b != b'\n' && b != b'\r';
        } else if in_string {
            // Block strings hold quotes only escaped or as `"""`; counting brackets in
            // them would at worst refuse a document deeper than any real one.
            match (escaped, b) {
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => escaped = false,
            }
        } else {
            match b {
                b'#' => in_comment = true,
                b'"' => in_string = true,
                b'{' | b'[' | b'(' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return Some(depth);
                    }
                }
                b'}' | b']' | b')' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    None
}

/// A syntax error as one line: where, and what was expected (the parser's own message
/// quotes the whole line, which may be the whole document).
fn parse_message(e: &async_graphql::parser::Error) -> String {
    match e {
        async_graphql::parser::Error::Syntax { message, start, .. } => {
            let what = message.lines().rev().find_map(|l| l.trim().strip_prefix("= ")).unwrap_or("unexpected input");
            format!("syntax error at line {}, column {}: {what}", start.line, start.column)
        }
        other => format!("the document cannot be read: {other}"),
    }
}

fn bound(message: &mut String) {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
}

/// `__typename @include(if: $v)` becomes `... @include(if: $v) { __typename }`: the
/// same field under the same condition (the spec evaluates both alike), but one whose
/// directives the validator visits.
fn lift_typename_directives(doc: &mut ExecutableDocument) {
    fn walk(set: &mut SelectionSet) {
        for sel in &mut set.items {
            match &mut sel.node {
                Selection::Field(f) if f.node.name.node == "__typename" && has_condition(&f.node.directives) => {
                    let directives = std::mem::take(&mut f.node.directives);
                    let pos = sel.pos;
                    let field = sel.node.clone();
                    sel.node = Selection::InlineFragment(Positioned::new(
                        async_graphql::parser::types::InlineFragment {
                            type_condition: None,
                            directives,
                            selection_set: Positioned::new(
                                SelectionSet { items: vec![Positioned::new(field, pos)] },
                                pos,
                            ),
                        },
                        pos,
                    ));
                }
                Selection::Field(f) => walk(&mut f.node.selection_set.node),
                Selection::InlineFragment(fr) => walk(&mut fr.node.selection_set.node),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    match &mut doc.operations {
        DocumentOperations::Single(op) => walk(&mut op.node.selection_set.node),
        DocumentOperations::Multiple(ops) => ops.values_mut().for_each(|op| walk(&mut op.node.selection_set.node)),
    }
    for fr in doc.fragments.values_mut() {
        walk(&mut fr.node.selection_set.node);
    }
}

/// The response key of the field [`mark_empty_selections`] adds; never in a response.
const EMPTY_MARK: &str = "_fraiseql_empty_";

/// A selection set whose every item is skipped gets `_fraiseql_empty_: __typename`, so
/// the executor answers an object (it says null for an empty one, which cannot be told
/// from a resolver's null); completion leaves the field out, giving `{}`.
fn mark_empty_selections(doc: &mut ExecutableDocument, variables: &Variables) {
    fn walk(set: &mut SelectionSet, variables: &Variables) {
        for sel in &mut set.items {
            match &mut sel.node {
                Selection::Field(f) => walk(&mut f.node.selection_set.node, variables),
                Selection::InlineFragment(fr) => walk(&mut fr.node.selection_set.node, variables),
                Selection::FragmentSpread(_) => {}
            }
        }
        if let Some(first) = set.items.first() {
            if set.items.iter().all(|s| skipped(s.node.directives(), variables)) {
                let pos = first.pos;
                let mark = Field {
                    alias: Some(Positioned::new(Name::new(EMPTY_MARK), pos)),
                    name: Positioned::new(Name::new("__typename"), pos),
                    arguments: Vec::new(),
                    directives: Vec::new(),
                    selection_set: Positioned::new(SelectionSet::default(), pos),
                };
                set.items.push(Positioned::new(Selection::Field(Positioned::new(mark, pos)), pos));
            }
        }
    }
    match &mut doc.operations {
        DocumentOperations::Single(op) => walk(&mut op.node.selection_set.node, variables),
        DocumentOperations::Multiple(ops) => {
            ops.values_mut().for_each(|op| walk(&mut op.node.selection_set.node, variables))
        }
    }
    for fr in doc.fragments.values_mut() {
        walk(&mut fr.node.selection_set.node, variables);
    }
}

fn has_condition(directives: &[Positioned<Directive>]) -> bool {
    directives.iter().any(|d| matches!(d.node.name.node.as_str(), "skip" | "include"))
}

/// Whether `@skip` / `@include` leave a selection out, with the coerced variables.
fn skipped(directives: &[Positioned<Directive>], variables: &Variables) -> bool {
    directives.iter().any(|d| {
        let include = match d.node.name.node.as_str() {
            "skip" => false,
            "include" => true,
            _ => return false,
        };
        let value = d
            .node
            .get_argument("if")
            .and_then(|v| v.node.clone().into_const_with(|name| variables.get(&name).cloned().ok_or(())).ok());
        matches!(value, Some(Value::Boolean(b)) if b != include)
    })
}

/// Give the errors of root fields their `path`, as the spec requires (the dynamic
/// executor reports only their location). Only errors raised by FraiseQL's resolvers
/// (they carry `extensions.code`) are touched.
fn add_root_paths(doc: &ExecutableDocument, resp: &mut Response) {
    let needs = |e: &ServerError| {
        e.path.is_empty() && !e.locations.is_empty() && e.extensions.as_ref().is_some_and(|x| x.get("code").is_some())
    };
    if !resp.errors.iter().any(needs) {
        return;
    }
    // Root fields by position: their response key (alias, else name), through fragments.
    fn walk(set: &SelectionSet, doc: &ExecutableDocument, out: &mut Vec<(Pos, String)>, depth: usize) {
        if depth > 8 {
            return;
        }
        for sel in &set.items {
            match &sel.node {
                Selection::Field(f) => out.push((f.pos, f.node.response_key().node.to_string())),
                Selection::InlineFragment(fr) => walk(&fr.node.selection_set.node, doc, out, depth + 1),
                Selection::FragmentSpread(sp) => {
                    if let Some(fr) = doc.fragments.get(&sp.node.fragment_name.node) {
                        walk(&fr.node.selection_set.node, doc, out, depth + 1);
                    }
                }
            }
        }
    }
    let mut roots = Vec::new();
    for (_, op) in doc.operations.iter() {
        walk(&op.node.selection_set.node, doc, &mut roots, 0);
    }
    for e in resp.errors.iter_mut().filter(|e| needs(e)) {
        if let Some((_, key)) = roots.iter().find(|(pos, _)| *pos == e.locations[0]) {
            e.path = vec![PathSegment::Field(key.clone())];
        }
    }
}

/// A non-null position holds null: its parent must be null too.
struct Propagate;

/// Completes the executor's `data` against the schema (the spec's CompleteValue over an
/// already resolved tree): selection order, nulls for failed fields, propagation.
struct Completer<'a> {
    shapes: &'a Shapes,
    doc: &'a ExecutableDocument,
    variables: &'a Variables,
    errors: &'a mut Vec<ServerError>,
    path: Vec<PathSegment>,
}

/// A response key and the fields (one, or several merged) it answers.
type Collected<'d> = Vec<(&'d Name, Vec<&'d Field>)>;

impl<'a> Completer<'a> {
    /// The spec's CollectFields: fields by response key, in order, through fragments whose
    /// type condition is this type.
    fn collect(&self, type_name: &str, set: &'a SelectionSet, out: &mut Collected<'a>, depth: usize) {
        if depth > 64 {
            return; // fragment cycles are refused by validation; this only bounds the walk
        }
        for sel in &set.items {
            if skipped(sel.node.directives(), self.variables) {
                continue;
            }
            match &sel.node {
                Selection::Field(f) => {
                    let key = &f.node.response_key().node;
                    if key.as_str() == EMPTY_MARK {
                        continue;
                    }
                    match out.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, fields)) => fields.push(&f.node),
                        None => out.push((key, vec![&f.node])),
                    }
                }
                Selection::InlineFragment(fr) => {
                    let applies = fr.node.type_condition.as_ref().is_none_or(|c| c.node.on.node == type_name);
                    if applies {
                        self.collect(type_name, &fr.node.selection_set.node, out, depth + 1);
                    }
                }
                Selection::FragmentSpread(sp) => {
                    if let Some(fr) = self.doc.fragments.get(&sp.node.fragment_name.node) {
                        if fr.node.type_condition.node.on.node == type_name {
                            self.collect(type_name, &fr.node.selection_set.node, out, depth + 1);
                        }
                    }
                }
            }
        }
    }

    /// Whether an error was raised below the current path.
    fn error_below(&self) -> bool {
        self.errors.iter().any(|e| e.path.len() > self.path.len() && e.path.starts_with(&self.path))
    }

    /// An object of type `type_name` answering `sets`; null when a non-null field of it is.
    fn object(&mut self, type_name: &str, sets: &[&'a SelectionSet], value: Value) -> Value {
        let mut fields = Vec::new();
        for set in sets {
            self.collect(type_name, set, &mut fields, 0);
        }
        let mut map = match value {
            Value::Object(map) => map,
            // The executor says null for an object whose every field failed; a null the
            // resolver gave has no error below it.
            Value::Null if self.error_below() => Default::default(),
            other => return other,
        };
        let Some(types) = self.shapes.objects.get(type_name) else {
            return Value::Object(map); // introspection types: served as the executor made them
        };
        let mut out = async_graphql::indexmap::IndexMap::with_capacity(fields.len());
        for (key, nodes) in fields {
            let value = map.swap_remove(key);
            let Some(ty) = types.get(nodes[0].name.node.as_str()) else {
                // `__typename`, `__schema`, `__type`: never null, typed by introspection.
                if let Some(v) = value {
                    out.insert(key.clone(), v);
                }
                continue;
            };
            let subs: Vec<&'a SelectionSet> = nodes.iter().map(|f| &f.selection_set.node).collect();
            self.path.push(PathSegment::Field(key.to_string()));
            let done = self.value(ty, value.unwrap_or(Value::Null), &subs);
            self.path.pop();
            match done {
                Ok(v) => {
                    out.insert(key.clone(), v);
                }
                Err(Propagate) => return Value::Null,
            }
        }
        Value::Object(out)
    }

    fn value(&mut self, ty: &Gql, value: Value, subs: &[&'a SelectionSet]) -> Result<Value, Propagate> {
        match ty {
            Gql::NonNull(inner) => match self.value(inner, value, subs)? {
                Value::Null => {
                    if !self.errors.iter().any(|e| e.path.starts_with(&self.path)) {
                        let mut e = ServerError::new("a non-null field has no value", None);
                        e.path = self.path.clone();
                        self.errors.push(coded(e, "INTERNAL"));
                    }
                    Err(Propagate)
                }
                v => Ok(v),
            },
            Gql::List(inner) => match value {
                Value::List(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        self.path.push(PathSegment::Index(i));
                        let done = self.value(inner, item, subs);
                        self.path.pop();
                        match done {
                            Ok(v) => out.push(v),
                            Err(Propagate) => return Ok(Value::Null),
                        }
                    }
                    Ok(Value::List(out))
                }
                other => Ok(other),
            },
            Gql::Named(name) if self.shapes.objects.contains_key(name.as_ref()) => Ok(self.object(name, subs, value)),
            Gql::Named(_) => Ok(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_and_comments() {
        assert_eq!(too_nested(&"{".repeat(MAX_NESTING)), None);
        assert_eq!(too_nested(&"{".repeat(MAX_NESTING + 1)), Some(MAX_NESTING + 1));
        let quoted = format!("{{ a(s: \"{}\\\"\") }} # {}", "{".repeat(1000), "[".repeat(1000));
        assert_eq!(too_nested(&quoted), None);
    }

    #[test]
    fn messages_are_cut_at_a_char_boundary() {
        let mut m = "é".repeat(MAX_MESSAGE);
        bound(&mut m);
        assert!(m.len() <= MAX_MESSAGE + '…'.len_utf8() && m.ends_with('…'));
    }
}
