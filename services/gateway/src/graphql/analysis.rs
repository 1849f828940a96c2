//! What the gateway learns from a request before it runs: whether it stays within the
//! per-request limits (fields selected, account mutations), whether an anonymous answer to it
//! depends only on the catalogue (so it may be shared through the response cache), and the
//! keys it is recognised and cached under.

use std::{collections::HashMap, fmt};

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, OperationDefinition, OperationType, Selection,
    SelectionSet,
};
use sha2::{Digest, Sha256};

/// What a parsed request selects, as far as the limits and the response cache care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Analysis {
    /// Fields selected, aliases included (they run again), fragments expanded.
    pub fields: usize,
    /// How many [`AUTH_MUTATIONS`] the operation that would run selects.
    pub auth_mutations: usize,
    /// An anonymous answer depends only on the catalogue: one query operation whose root fields
    /// are all `products` / `product` / `__typename`.
    pub catalogue_only: bool,
}

impl Analysis {
    /// `doc` analysed as the operation `operation_name` (all of them when `None`) would run.
    pub fn of(doc: &ExecutableDocument, operation_name: Option<&str>) -> Self {
        Self {
            fields: count_fields(doc),
            auth_mutations: count_auth_mutations(doc, operation_name),
            catalogue_only: catalogue_only(doc),
        }
    }

    /// The first per-request limit the request breaks, if any: at most `max_fields` fields, at
    /// most one account mutation.
    pub fn check(&self, max_fields: usize) -> Result<(), LimitExceeded> {
        if self.fields > max_fields {
            return Err(LimitExceeded::Fields {
                selected: self.fields,
                allowed: max_fields,
            });
        }
        if self.auth_mutations > 1 {
            return Err(LimitExceeded::AuthMutations(self.auth_mutations));
        }
        Ok(())
    }
}

/// A per-request limit a query breaks: it is refused before anything runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error(
        "the query selects {selected} fields (aliases included); at most {allowed} are allowed"
    )]
    Fields { selected: usize, allowed: usize },
    #[error(
        "the operation runs {0} of register, login and refreshToken (aliases included); at most \
         one is allowed per request"
    )]
    AuthMutations(usize),
}

/// Counts the fields of `set` that `counts` accepts, fragments and inline fragments expanded
/// (a named fragment is walked once, then remembered in `memo`). `nested`: the fields below
/// each field count too; otherwise only this level does (root fields: mutations).
fn count_selected(
    set: &SelectionSet,
    doc: &ExecutableDocument,
    memo: &mut HashMap<String, usize>,
    depth: usize,
    counts: fn(&Field) -> bool,
    nested: bool,
) -> usize {
    if depth > 32 {
        // Only a fragment cycle nests this deep; validation refuses it, and so do we.
        return usize::MAX / 4;
    }
    let walk = |set: &SelectionSet, memo: &mut HashMap<String, usize>| {
        count_selected(set, doc, memo, depth + 1, counts, nested)
    };
    let mut n: usize = 0;
    for item in &set.items {
        n = n.saturating_add(match &item.node {
            Selection::Field(f) => {
                let below = if nested {
                    walk(&f.node.selection_set.node, memo)
                } else {
                    0
                };
                usize::from(counts(&f.node)).saturating_add(below)
            }
            Selection::InlineFragment(f) => walk(&f.node.selection_set.node, memo),
            Selection::FragmentSpread(s) => {
                let name = s.node.fragment_name.node.as_str();
                if let Some(n) = memo.get(name) {
                    *n
                } else {
                    let n = doc
                        .fragments
                        .get(name)
                        .map_or(0, |f| walk(&f.node.selection_set.node, memo));
                    memo.insert(name.to_owned(), n);
                    n
                }
            }
        });
    }
    n
}

/// How many fields a document selects (aliases count: they run again), fragments expanded.
fn count_fields(doc: &ExecutableDocument) -> usize {
    let mut memo = HashMap::new();
    let mut count = |set: &SelectionSet| count_selected(set, doc, &mut memo, 0, |_| true, true);
    match &doc.operations {
        DocumentOperations::Single(op) => count(&op.node.selection_set.node),
        DocumentOperations::Multiple(ops) => ops
            .values()
            .map(|op| count(&op.node.selection_set.node))
            .fold(0, usize::saturating_add),
    }
}

/// Mutations that each cost a password hash (`register`, `login`) or a token rotation
/// (`refreshToken`). One request may run at most one: fifty aliased `login`s would otherwise cost
/// fifty Argon2 hashes for one unit of the client's budget.
pub const AUTH_MUTATIONS: [&str; 3] = ["register", "login", "refreshToken"];

/// How many [`AUTH_MUTATIONS`] the operation that would run selects: aliases count, fragments
/// and inline fragments are expanded, `@skip`/`@include` are ignored (counted as if they ran).
/// With several operations and no `operationName`, all of them are counted.
fn count_auth_mutations(doc: &ExecutableDocument, operation_name: Option<&str>) -> usize {
    fn is_auth(f: &Field) -> bool {
        AUTH_MUTATIONS.contains(&f.name.node.as_str())
    }
    let mut memo = HashMap::new();
    let mut count = |op: &OperationDefinition| {
        if op.ty == OperationType::Mutation {
            // Only root fields can be mutations: no need to look below them.
            count_selected(&op.selection_set.node, doc, &mut memo, 0, is_auth, false)
        } else {
            0
        }
    };
    match &doc.operations {
        DocumentOperations::Single(op) => count(&op.node),
        DocumentOperations::Multiple(ops) => ops
            .iter()
            .filter(|(name, _)| operation_name.is_none_or(|n| name.as_str() == n))
            .map(|(_, op)| count(&op.node))
            .fold(0, usize::saturating_add),
    }
}

/// Whether an anonymous answer to `doc` depends only on the catalogue ([`Analysis`]).
fn catalogue_only(doc: &ExecutableDocument) -> bool {
    let DocumentOperations::Single(op) = &doc.operations else {
        return false;
    };
    op.node.ty == OperationType::Query
        && op.node.selection_set.node.items.iter().all(|item| {
            matches!(&item.node, Selection::Field(f)
                if matches!(f.node.name.node.as_str(), "products" | "product" | "__typename"))
        })
}

/// The SHA-256 of a request body exactly as sent: recognises a body seen before without
/// parsing it (see `KnownQueries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BodyFingerprint([u8; 32]);

impl BodyFingerprint {
    pub fn of(body: &[u8]) -> Self {
        Self(Sha256::digest(body).into())
    }
}

/// The response-cache key of a request: what it asks, not how it is spelt. GraphQL's ignored
/// tokens (whitespace, commas, comments) and the JSON's layout and key order do not change it,
/// so variants of one query share one cache entry instead of each creating its own (a client
/// could otherwise fill the cache, and miss it at will, with respaced copies of one query).
/// Displayed as lowercase hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    pub fn of(request: &async_graphql::Request) -> Self {
        let mut hash = Sha256::new();
        hash.update(minified(&request.query).as_bytes());
        hash.update([0]);
        hash.update(
            request
                .operation_name
                .as_deref()
                .unwrap_or_default()
                .as_bytes(),
        );
        hash.update([0]);
        let variables = serde_json::to_value(&request.variables).unwrap_or_default();
        hash.update(canonical_json(&variables).as_bytes());
        hash.update([0]);
        let extensions = serde_json::to_value(&request.extensions).unwrap_or_default();
        hash.update(canonical_json(&extensions).as_bytes());
        Self(hash.finalize().into())
    }
}

impl fmt::Display for CacheKey {
    /// Lowercase hex, written at once (this runs on every cached answer: the hot path).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 15)];
        }
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

/// `query` without GraphQL's ignored tokens: whitespace, commas and comments are dropped, and
/// one space is kept only between two tokens that would otherwise run together. String and
/// block-string literals are kept byte for byte.
fn minified(query: &str) -> String {
    fn punctuator(c: char) -> bool {
        matches!(
            c,
            '!' | '$' | '&' | '(' | ')' | '.' | ':' | '=' | '@' | '[' | ']' | '{' | '|' | '}'
        )
    }
    let mut out = String::with_capacity(query.len());
    let mut gap = false;
    let mut chars = query.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' | ',' | '\u{feff}' => gap = true,
            '#' => {
                while chars.next_if(|&n| n != '\n' && n != '\r').is_some() {}
                gap = true;
            }
            _ => {
                if gap && out.chars().last().is_some_and(|p| !punctuator(p)) && !punctuator(c) {
                    out.push(' ');
                }
                gap = false;
                out.push(c);
                if c == '"' {
                    copy_string(&mut chars, &mut out);
                }
            }
        }
    }
    out
}

/// Copies the rest of a string literal whose opening quote is already in `out` (a block
/// string when two more quotes follow), escapes included.
fn copy_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, out: &mut String) {
    let block = {
        let mut ahead = chars.clone();
        ahead.next() == Some('"') && ahead.next() == Some('"')
    };
    if block {
        out.push_str(&chars.by_ref().take(2).collect::<String>());
        let mut quotes = 0;
        while let Some(c) = chars.next() {
            out.push(c);
            match c {
                '\\' if chars.peek() == Some(&'"') => {
                    // `\"""` is an escaped triple quote, not the end.
                    out.extend(chars.next());
                    quotes = 0;
                }
                '"' => {
                    quotes += 1;
                    if quotes == 3 {
                        return;
                    }
                }
                _ => quotes = 0,
            }
        }
        return;
    }
    while let Some(c) = chars.next() {
        out.push(c);
        match c {
            '\\' => out.extend(chars.next()),
            '"' | '\n' | '\r' => return,
            _ => {}
        }
    }
}

/// JSON with object keys in sorted order at every level and no insignificant whitespace.
fn canonical_json(value: &serde_json::Value) -> String {
    fn sorted(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                serde_json::Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sorted).collect())
            }
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(body: &str) -> CacheKey {
        CacheKey::of(&serde_json::from_str::<async_graphql::Request>(body).expect("request"))
    }

    #[test]
    fn respaced_variants_of_one_query_share_one_cache_key() {
        let plain = r#"{"query": "{ products(limit: 20, search: \"a  b\") { id name } }", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#;
        for variant in [
            // Whitespace, commas and comments are GraphQL's ignored tokens.
            r#"{"query": "{products(limit:20 search:\"a  b\"){id,name}}", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#,
            r#"{"query": "\n\t{ products ( limit : 20 ,,, search : \"a  b\" ) # the list\n { id\n name } }\n", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#,
            // JSON layout and key order.
            r#"{ "variables" : { "b" : [ 1 , { "y" : 2 , "x" : 1 } ] , "a" : 1 } , "query" : "{ products(limit: 20, search: \"a  b\") { id name } }" }"#,
        ] {
            assert_eq!(key(plain), key(variant), "{variant}");
        }
        for different in [
            // Spaces inside a string literal are the query's meaning.
            r#"{"query": "{ products(limit: 20, search: \"a b\") { id name } }", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#,
            r#"{"query": "{ products(limit: 2, search: \"a  b\") { id name } }", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#,
            r#"{"query": "{ products(limit: 20, search: \"a  b\") { id name } }", "variables": {"a": 2, "b": [1, {"x": 1, "y": 2}]}}"#,
            r#"{"query": "{ products(limit: 20, search: \"a  b\") { id name } }", "variables": {"a": 1, "b": [{"x": 1, "y": 2}, 1]}}"#,
            r#"{"query": "{ products(limit: 20, search: \"a  b\") { id name } }", "operationName": "X", "variables": {"a": 1, "b": [1, {"x": 1, "y": 2}]}}"#,
        ] {
            assert_ne!(key(plain), key(different), "{different}");
        }
    }

    #[test]
    fn minifying_keeps_tokens_apart_and_literals_whole() {
        assert_eq!(
            minified("query Q($a: Int = 1) { a: f(x: $a, y: 2 z: \"s, #t\") ...on T { b } }"),
            "query Q($a:Int=1){a:f(x:$a y:2 z:\"s, #t\")...on T{b}}"
        );
        assert_eq!(minified("{ f(a: \"\" b: \"x\") }"), "{f(a:\"\" b:\"x\")}");
        assert_eq!(
            minified("{ f(a: \"\"\"block ,  # \\\"\"\" \"\"\" ) }"),
            "{f(a:\"\"\"block ,  # \\\"\"\" \"\"\")}"
        );
        // Each variant parses to the same document as the original.
        for q in [
            "query Q($a: Int = 1) { a: f(x: $a, y: 2 z: \"s, #t\") ...on T { b } }",
            "{ f(a: \"\" b: \"x\") }",
            "{ f(a: \"\"\"block ,  # \\\"\"\" \"\"\" ) }",
        ] {
            async_graphql::parser::parse_query(minified(q)).expect("still parses");
        }
    }

    fn auth_mutations(query: &str, operation_name: Option<&str>) -> usize {
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        count_auth_mutations(&doc, operation_name)
    }

    #[test]
    fn auth_mutations_are_counted_through_aliases_and_fragments() {
        let login = r#"login(email: "a@b.c", password: "12345678") { accessToken }"#;
        assert_eq!(auth_mutations(&format!("mutation {{ {login} }}"), None), 1);
        assert_eq!(
            auth_mutations(&format!("mutation {{ a: {login} b: {login} }}"), None),
            2
        );
        assert_eq!(
            auth_mutations(
                &format!(
                    "mutation {{ ...F ... on Mutation {{ {login} }} }} \
                     fragment F on Mutation {{ x: {login} ...G ...G }} \
                     fragment G on Mutation {{ refreshToken(refreshToken: \"t\") {{ accessToken }} }}"
                ),
                None
            ),
            4
        );
        // Queries cannot hold them; a field of that name below the root is not one.
        assert_eq!(auth_mutations("{ products { name } }", None), 0);
        assert_eq!(
            auth_mutations("mutation { cancelOrder(id: 1) { login: id } }", None),
            0
        );
        // The named operation is the one that runs.
        let two = format!("mutation A {{ {login} }} mutation B {{ {login} }}");
        assert_eq!(auth_mutations(&two, Some("A")), 1);
        assert_eq!(auth_mutations(&two, None), 2);
    }

    fn analysis(query: &str) -> Analysis {
        Analysis::of(
            &async_graphql::parser::parse_query(query).expect("parses"),
            None,
        )
    }

    #[test]
    fn limits_are_checked_fields_first_with_the_messages_clients_see() {
        let two_logins = r#"mutation { a: login(email: "a@b.c", password: "12345678") { accessToken }
            b: login(email: "a@b.c", password: "12345678") { accessToken } }"#;
        let a = analysis(two_logins);
        assert_eq!(
            (a.fields, a.auth_mutations, a.catalogue_only),
            (4, 2, false)
        );
        assert_eq!(
            a.check(3).expect_err("too many fields").to_string(),
            "the query selects 4 fields (aliases included); at most 3 are allowed"
        );
        assert_eq!(
            a.check(4).expect_err("two logins").to_string(),
            "the operation runs 2 of register, login and refreshToken (aliases included); at \
             most one is allowed per request"
        );
        assert_eq!(analysis("{ products { id } }").check(2), Ok(()));
    }

    #[test]
    fn only_catalogue_queries_are_catalogue_only() {
        assert!(analysis("{ products { id } product(id: 1) { name } __typename }").catalogue_only);
        assert!(!analysis("{ products { id } me { id } }").catalogue_only);
        assert!(
            !analysis("query A { products { id } } query B { products { id } }").catalogue_only
        );
        assert!(!analysis("mutation { deleteProduct(id: 1) }").catalogue_only);
    }

    #[test]
    fn a_cache_key_is_shown_as_lowercase_hex() {
        let shown = key(r#"{"query": "{ products { id } }"}"#).to_string();
        assert_eq!(shown.len(), 64);
        assert!(
            shown
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
