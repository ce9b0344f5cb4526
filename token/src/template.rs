//! RFC 6570 URI templates, as `resources/templates/list` shows them, and the
//! rule that decides which of them a token sees.
//!
//! The rule: a template is listed when it can produce a URI the token may
//! read (`resources/read`), or when the token may read every URI (the
//! method-wide `mcp:resources/read`, `mcp:*`). "Can produce" is decided by
//! building such a URI: [`readable_expansion`] searches the product of the
//! template (as an automaton over its literal text and expressions) and one
//! name pattern for a string both accept, turns the path found into variable
//! values, expands the template with them and asks
//! [`crate::scopes::grants`] about the result, the same function that
//! decides the `resources/read` call. So a listed template always has a URI
//! the token can read, by construction.
//!
//! The search models each expression as "undefined" or "one of its variables
//! defined" (string values; prefix and explode modifiers treated as a plain
//! value): a subset of what the template can produce. Whatever it misses is
//! hidden, never shown: a template the search cannot fit to a pattern (a
//! multi-variable expansion needed to reach it, a literal part that is
//! ambiguous under URI normalisation, a template over 1024 bytes or not valid
//! RFC 6570, a search past 100,000 steps) is listed only with the
//! method-wide scope.

use crate::scopes::{self, Item, Scope};
use crate::uri;
use std::collections::{HashMap, VecDeque};

/// Longer templates are listed only with the method-wide scope.
pub const MAX_TEMPLATE_LEN: usize = 1024;

/// The most (state, pattern position) pairs one search visits.
const MAX_CELLS: usize = 100_000;

/// An expression's operator (RFC 6570 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Simple,
    Reserved,
    Fragment,
    Label,
    Path,
    PathParam,
    Query,
    QueryCont,
}

impl Op {
    fn of(c: char) -> Option<Op> {
        Some(match c {
            '+' => Op::Reserved,
            '#' => Op::Fragment,
            '.' => Op::Label,
            '/' => Op::Path,
            ';' => Op::PathParam,
            '?' => Op::Query,
            '&' => Op::QueryCont,
            _ => return None,
        })
    }

    /// What comes before the first defined variable.
    fn first(self) -> &'static str {
        match self {
            Op::Simple | Op::Reserved => "",
            Op::Fragment => "#",
            Op::Label => ".",
            Op::Path => "/",
            Op::PathParam => ";",
            Op::Query => "?",
            Op::QueryCont => "&",
        }
    }

    /// `name=value` pairs.
    fn named(self) -> bool {
        matches!(self, Op::PathParam | Op::Query | Op::QueryCont)
    }

    /// What follows the name of a named variable with an empty value.
    fn if_empty(self) -> &'static str {
        match self {
            Op::Query | Op::QueryCont => "=",
            _ => "",
        }
    }

    /// Reserved characters and `%XX` triplets in values pass unencoded.
    fn allows_reserved(self) -> bool {
        matches!(self, Op::Reserved | Op::Fragment)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct VarSpec {
    name: String,
    /// `:n`: at most `n` characters of the value.
    prefix: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Expr(Op, Vec<VarSpec>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// For one expression: which variable is defined, with which value (`None`:
/// every variable undefined, the expression expands to nothing).
pub type Choice = Option<(usize, String)>;

/// RFC 3986 unreserved characters.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 reserved characters (gen-delims and sub-delims).
pub fn is_reserved(b: u8) -> bool {
    matches!(
        b,
        b':' | b'/'
            | b'?'
            | b'#'
            | b'['
            | b']'
            | b'@'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
    )
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

/// A literal character RFC 6570 §2.1 allows (outside `%XX`).
fn literal_char_ok(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            ' ' | '"' | '\'' | '%' | '<' | '>' | '\\' | '^' | '`' | '{' | '|' | '}'
        ))
}

impl Template {
    /// Parses `t`, or `None` when it is not an RFC 6570 template (or longer
    /// than [`MAX_TEMPLATE_LEN`]).
    pub fn parse(t: &str) -> Option<Template> {
        if t.len() > MAX_TEMPLATE_LEN {
            return None;
        }
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = t;
        while let Some(c) = rest.chars().next() {
            match c {
                '{' => {
                    let end = rest.find('}')?;
                    let expr = parse_expr(&rest[1..end])?;
                    if !lit.is_empty() {
                        parts.push(Part::Lit(core::mem::take(&mut lit)));
                    }
                    parts.push(expr);
                    rest = &rest[end + 1..];
                }
                '%' => {
                    let b = rest.as_bytes();
                    if b.len() < 3 || !is_hex(b[1]) || !is_hex(b[2]) {
                        return None;
                    }
                    lit.push_str(&rest[..3]);
                    rest = &rest[3..];
                }
                c if literal_char_ok(c) => {
                    lit.push(c);
                    rest = &rest[c.len_utf8()..];
                }
                _ => return None,
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Some(Template { parts })
    }

    fn exprs(&self) -> impl Iterator<Item = (Op, &[VarSpec])> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(op, vars) => Some((*op, vars.as_slice())),
            Part::Lit(_) => None,
        })
    }

    /// Expands the template with one choice per expression, in order
    /// (missing choices: undefined).
    pub fn expand(&self, choices: &[Choice]) -> String {
        let mut out = String::new();
        let mut next = choices.iter();
        for part in &self.parts {
            match part {
                Part::Lit(l) => out.push_str(l),
                Part::Expr(op, vars) => {
                    let Some(Some((k, value))) = next.next() else {
                        continue;
                    };
                    let Some(var) = vars.get(*k) else { continue };
                    out.push_str(op.first());
                    let value: String = match var.prefix {
                        Some(n) => value.chars().take(n).collect(),
                        None => value.clone(),
                    };
                    if op.named() {
                        out.push_str(&var.name);
                        if value.is_empty() {
                            out.push_str(op.if_empty());
                            continue;
                        }
                        out.push('=');
                    }
                    encode(&value, op.allows_reserved(), &mut out);
                }
            }
        }
        out
    }
}

fn parse_expr(body: &str) -> Option<Part> {
    let mut chars = body.chars();
    let (op, list) = match chars.next().and_then(Op::of) {
        Some(op) => (op, chars.as_str()),
        None => (Op::Simple, body),
    };
    let mut vars = Vec::new();
    for spec in list.split(',') {
        let (name, modifier) = match spec.find([':', '*']) {
            Some(i) => (&spec[..i], &spec[i..]),
            None => (spec, ""),
        };
        if !valid_varname(name) {
            return None;
        }
        let prefix = match modifier {
            "" | "*" => None,
            m => {
                let digits = m.strip_prefix(':')?;
                if digits.is_empty()
                    || digits.len() > 4
                    || digits.starts_with('0')
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                Some(digits.parse().ok()?)
            }
        };
        vars.push(VarSpec {
            name: name.to_string(),
            prefix,
        });
    }
    Some(Part::Expr(op, vars))
}

/// `varchar *( ["."] varchar )`, varchar = ALPHA / DIGIT / "_" / pct-encoded.
fn valid_varname(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b[0] == b'.' || b[b.len() - 1] == b'.' {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() && is_hex(b[i + 1]) && is_hex(b[i + 2]) => i += 3,
            b'.' if b[i - 1] != b'.' => i += 1,
            c if c.is_ascii_alphanumeric() || c == b'_' => i += 1,
            _ => return false,
        }
    }
    true
}

/// Appends `value` encoded for an expansion (RFC 6570 §3.2.1).
fn encode(value: &str, reserved: bool, out: &mut String) {
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is_unreserved(c) || (reserved && is_reserved(c)) {
            out.push(char::from(c));
            i += 1;
        } else if reserved && c == b'%' && i + 2 < b.len() && is_hex(b[i + 1]) && is_hex(b[i + 2]) {
            out.push_str(&value[i..i + 3]);
            i += 3;
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(c >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(c & 15)]));
            i += 1;
        }
    }
}

/// A URI `template` can produce that `scopes` let the token read, if the
/// search finds one (see the module documentation).
pub fn readable_expansion(template: &str, scopes: &[Scope]) -> Option<String> {
    let t = Template::parse(template)?;
    let nfa = Nfa::build(&t)?;
    for scope in scopes {
        let Scope::Mcp {
            method,
            name: Some(pattern),
        } = scope
        else {
            continue;
        };
        if !scopes::glob_match(method, "resources/read") {
            continue;
        }
        let items = scopes::pattern_items(pattern);
        // Exact first; then letters in any case, for text that normal form
        // lowercases (a host, also one an expansion makes: `a:/{x}/B` with
        // `x` undefined is `a://B`).
        for loose in [false, true] {
            if let Some(uri) = nfa
                .search(&items, loose)
                .and_then(|choices| granted_variant(&t, choices, scopes))
            {
                return Some(uri);
            }
        }
    }
    None
}

/// The expansion of `choices` if the token may read it. The shortest fit may
/// leave a value that is a dot segment (`.`) where a star could have taken
/// one more character before or after it: those variants are tried too.
fn granted_variant(t: &Template, choices: Vec<Choice>, scopes: &[Scope]) -> Option<String> {
    let defined: Vec<usize> = (0..choices.len())
        .filter(|&e| choices[e].is_some())
        .collect();
    // (which expression: none at first, then all (`None`), then each one;
    // prepend or append)
    let variants = [(Some(usize::MAX), false), (None, false), (None, true)]
        .into_iter()
        .chain(
            defined
                .iter()
                .flat_map(|&e| [(Some(e), false), (Some(e), true)]),
        );
    for (which, prepend) in variants {
        let mut c = choices.clone();
        for (e, choice) in c.iter_mut().enumerate() {
            if let Some((_, value)) = choice {
                if which.is_none() || which == Some(e) {
                    if prepend {
                        value.insert(0, 'a');
                    } else {
                        value.push('a');
                    }
                }
            }
        }
        let uri = t.expand(&c);
        if scopes::grants(scopes, "resources/read", Some(&uri)) {
            return Some(uri);
        }
    }
    None
}

/// Where in a URI a value lands, by the normal form of the literal text
/// around it (an expansion that holds `/`, `?` or `#` may move what follows;
/// the final check catches that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Region {
    /// The authority: normal form lowercases it.
    Host,
    /// The path: `%2F`, `%5C`, `%25` and controls make a URI ambiguous.
    Path,
    /// Query or fragment.
    Tail,
}

/// What an edge of the template automaton reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Eps,
    Byte(u8),
    /// One character a value may hold unencoded: unreserved, plus reserved
    /// for `+` and `#`. No uppercase letter in a host, which normal form
    /// lowercases (a pattern's uppercase letters belong elsewhere).
    Class {
        reserved: bool,
        region: Region,
    },
    /// A `%XX` triplet of a byte a value may hold encoded, as normal form
    /// writes it: not an unreserved byte (decoded there), hex in uppercase
    /// (lowercase in a host), nothing that makes a path ambiguous.
    Triplet {
        region: Region,
    },
}

fn class_ok(b: u8, reserved: bool, region: Region) -> bool {
    (is_unreserved(b) || (reserved && is_reserved(b)))
        && !(region == Region::Host && b.is_ascii_uppercase())
}

fn triplet_ok(h: u8, l: u8, region: Region, loose: bool) -> bool {
    let (Some(hv), Some(lv)) = (hex_value(h), hex_value(l)) else {
        return false;
    };
    let byte = hv << 4 | lv;
    let case_ok =
        |c: u8| loose || c.is_ascii_digit() || c.is_ascii_lowercase() == (region == Region::Host);
    !is_unreserved(byte)
        && case_ok(h)
        && case_ok(l)
        && !(region == Region::Path
            && (matches!(byte, b'/' | b'\\' | b'%') || byte < 0x20 || byte == 0x7F))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    None,
    /// Inside the branch where expression `.0` defines variable `.1`.
    Var(usize, usize),
    /// As `Var`, and what edges from here read is the value.
    Value(usize, usize),
}

#[derive(Debug, Default)]
struct Nfa {
    edges: Vec<Vec<(On, u32)>>,
    tags: Vec<Tag>,
    /// Operator of each expression, in order.
    ops: Vec<Op>,
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// Private-use characters stand for the expressions while the literal text
/// is normalised.
const MARK: u32 = 0xF0000;

/// Up to three bytes an edge read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Read {
    bytes: [u8; 3],
    len: u8,
}

impl Read {
    const NONE: Read = Read {
        bytes: [0; 3],
        len: 0,
    };

    fn one(b: u8) -> Read {
        Read {
            bytes: [b, 0, 0],
            len: 1,
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Nfa {
    fn state(&mut self, tag: Tag) -> u32 {
        self.edges.push(Vec::new());
        self.tags.push(tag);
        (self.edges.len() - 1) as u32
    }

    fn edge(&mut self, from: u32, on: On, to: u32) {
        self.edges[from as usize].push((on, to));
    }

    /// A chain reading `text` from `from`; returns its last state.
    fn chain(&mut self, mut from: u32, text: &str, tag: Tag) -> u32 {
        for &b in text.as_bytes() {
            let to = self.state(tag);
            self.edge(from, On::Byte(b), to);
            from = to;
        }
        from
    }

    /// The automaton of `t` with its literal text in RFC 3986 normal form
    /// (patterns are normal form); `None` when that text is ambiguous.
    ///
    /// It has three copies of the template: as its literal text places
    /// things, "past the host", where the rest goes once an expansion in the
    /// host wrote a `/` (`https://{h}.x.com{/id}{;v}`), and "in the tail",
    /// once one wrote a `?` or `#` (`a:/x{?q}/{y}`: with `q` defined, `/{y}`
    /// is in the query).
    fn build(t: &Template) -> Option<Nfa> {
        let mut skeleton = String::new();
        let mut count = 0u32;
        for part in &t.parts {
            match part {
                Part::Lit(l) => skeleton.push_str(l),
                Part::Expr(..) => {
                    skeleton.push(char::from_u32(MARK + count)?);
                    count += 1;
                }
            }
        }
        let normal = uri::normalize(&skeleton);
        if normal.ambiguous {
            return None;
        }
        let text = normal.text.as_str();
        // The authority: after `scheme://`, up to the next `/`, `?` or `#`.
        let scheme_end = text.find(':').filter(|&i| {
            i > 0
                && text[..i]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        });
        let host = scheme_end
            .filter(|&i| text[i + 1..].starts_with("//"))
            .map(|i| {
                let start = i + 3;
                let len = text[start..]
                    .find(['/', '?', '#'])
                    .unwrap_or(text.len() - start);
                start..start + len
            });
        let tail = text.find(['?', '#']).unwrap_or(text.len());
        // Literal pieces around the expressions, and each expression's place.
        let mut pieces = vec![String::new()];
        let mut places = Vec::new();
        for (i, c) in text.char_indices() {
            let mark = u32::from(c).wrapping_sub(MARK);
            if mark >= 0x10000 {
                pieces.last_mut()?.push(c);
                continue;
            }
            if mark as usize != places.len() {
                return None;
            }
            places.push(i);
            pieces.push(String::new());
        }
        let exprs: Vec<(Op, &[VarSpec])> = t.exprs().collect();
        if places.len() != exprs.len() {
            return None;
        }

        let mut nfa = Nfa::default();
        let start = nfa.state(Tag::None);
        // entry[floor][e]: where literal piece `e` starts when nothing from
        // here on can be placed before region `floor`.
        let entry: [Vec<u32>; 3] = [0, 1, 2].map(|floor| {
            (0..pieces.len())
                .map(|e| {
                    if floor == 0 && e == 0 {
                        start
                    } else {
                        nfa.state(Tag::None)
                    }
                })
                .collect()
        });
        let regions = [Region::Host, Region::Path, Region::Tail];
        let mut ends = Vec::new();
        for (floor, entries) in entry.iter().enumerate() {
            for (e, piece) in pieces.iter().enumerate() {
                let at = nfa.chain(entries[e], piece, Tag::None);
                let Some(&(op, vars)) = exprs.get(e) else {
                    ends.push(at);
                    continue;
                };
                let i = places[e];
                let placed = if i >= tail || matches!(op, Op::Query | Op::Fragment) {
                    Region::Tail
                } else if host.as_ref().is_some_and(|h| h.contains(&i)) && op != Op::Path {
                    Region::Host
                } else {
                    Region::Path
                };
                let region = placed.max(regions[floor]);
                // Where the expression ends, by the region its value ended in.
                let after = regions.map(|r| entry[(r.max(regions[floor])) as usize][e + 1]);
                nfa.edge(at, On::Eps, entries[e + 1]);
                for (k, var) in vars.iter().enumerate() {
                    nfa.branch(at, after, (op, e, k), &var.name, region);
                }
            }
        }
        nfa.ops = exprs.iter().map(|(op, _)| *op).collect();
        // The accepting state is the last one made.
        let accept = nfa.state(Tag::None);
        for at in ends {
            nfa.edge(at, On::Eps, accept);
        }
        Some(nfa)
    }

    /// The value loop of a variable in `region`: returns its state. `ends`:
    /// where the expression ends, by the region its value ends in.
    fn value_loop(&mut self, tag: Tag, reserved: bool, region: Region, ends: [u32; 3]) -> u32 {
        let lp = self.state(tag);
        self.edge(lp, On::Class { reserved, region }, lp);
        self.edge(lp, On::Triplet { region }, lp);
        self.edge(lp, On::Eps, ends[region as usize]);
        if reserved && region != Region::Tail {
            // A `/` in the value ends the host; `?` and `#` the path.
            for (delim, next) in [
                (b'/', Region::Path),
                (b'?', Region::Tail),
                (b'#', Region::Tail),
            ] {
                if next != region {
                    let after = self.value_loop(tag, reserved, next, ends);
                    self.edge(lp, On::Byte(delim), after);
                }
            }
        }
        lp
    }

    /// Expression `e` (operator `op`) with only variable `k` defined.
    fn branch(
        &mut self,
        from: u32,
        ends: [u32; 3],
        (op, e, k): (Op, usize, usize),
        name: &str,
        region: Region,
    ) {
        let var = Tag::Var(e, k);
        let value = Tag::Value(e, k);
        let reserved = op.allows_reserved();
        let mut at = self.chain(from, op.first(), var);
        if at == from {
            // Keep the branch's states apart from the shared start.
            let s = self.state(var);
            self.edge(from, On::Eps, s);
            at = s;
        }
        let lp = self.value_loop(value, reserved, region, ends);
        if op.named() {
            at = self.chain(at, name, var);
            if op.if_empty().is_empty() {
                // `;name` alone, or `;name=` and at least one character.
                self.edge(at, On::Eps, ends[region as usize]);
                let eq = self.chain(at, "=", var);
                let first = self.state(value);
                self.edge(eq, On::Eps, first);
                self.edge(first, On::Class { reserved, region }, lp);
                self.edge(first, On::Triplet { region }, lp);
                return;
            }
            at = self.chain(at, "=", var);
        }
        self.edge(at, On::Eps, lp);
    }

    /// Breadth-first search of (automaton state, pattern position) for a
    /// string both accept; the choices that produce it. `loose`: letters
    /// of the literal text and of triplets match in any case.
    fn search(&self, pattern: &[Item], loose: bool) -> Option<Vec<Choice>> {
        /// How a cell was reached: from which cell, by an edge of which
        /// state (`u32::MAX`: a pattern star ended), reading what.
        type Step = ((u32, u32), u32, Read);
        let accept = (self.edges.len() - 1) as u32;
        let end = pattern.len() as u32;
        let lit = |i: u32| match pattern.get(i as usize) {
            Some(Item::Lit(b)) => Some(*b),
            _ => None,
        };
        let mut seen: HashMap<(u32, u32), Step> = HashMap::new();
        let mut queue = VecDeque::from([(0u32, 0u32)]);
        seen.insert((0, 0), ((0, 0), u32::MAX, Read::NONE));
        let mut found = false;
        while let Some((s, p)) = queue.pop_front() {
            if s == accept && p == end {
                found = true;
                break;
            }
            if seen.len() > MAX_CELLS {
                // Bounded work and memory per template, whatever the server
                // sends: past this the template is hidden.
                return None;
            }
            let item = pattern.get(p as usize).copied();
            let mut next: Vec<Step> = Vec::new();
            if item == Some(Item::Star) {
                next.push(((s, p + 1), u32::MAX, Read::NONE));
            }
            for &(on, to) in &self.edges[s as usize] {
                // A star takes anything; a self-loop under a star leads
                // nowhere new.
                let star = item == Some(Item::Star) && to != s;
                let read = match (on, item) {
                    (On::Eps, _) => Some((p, Read::NONE)),
                    (On::Byte(c), Some(Item::Lit(b)))
                        if b == c || (loose && b.eq_ignore_ascii_case(&c)) =>
                    {
                        Some((p + 1, Read::one(c)))
                    }
                    (On::Byte(c), _) if star => Some((p, Read::one(c))),
                    (On::Class { reserved, region }, Some(Item::Lit(b)))
                        if class_ok(b, reserved, region) =>
                    {
                        Some((p + 1, Read::one(b)))
                    }
                    (On::Class { .. }, _) if star => Some((p, Read::one(b'a'))),
                    (On::Triplet { region }, Some(Item::Lit(b'%'))) => {
                        match (lit(p + 1), lit(p + 2)) {
                            (Some(h), Some(l)) if triplet_ok(h, l, region, loose) => Some((
                                p + 3,
                                Read {
                                    bytes: [b'%', h, l],
                                    len: 3,
                                },
                            )),
                            _ => None,
                        }
                    }
                    (On::Triplet { .. }, _) if star => Some((
                        p,
                        Read {
                            bytes: *b"%20",
                            len: 3,
                        },
                    )),
                    _ => None,
                };
                if let Some((q, read)) = read {
                    next.push(((to, q), s, read));
                }
            }
            for (cell, by, read) in next {
                if let std::collections::hash_map::Entry::Vacant(v) = seen.entry(cell) {
                    v.insert(((s, p), by, read));
                    queue.push_back(cell);
                }
            }
        }
        if !found {
            return None;
        }
        // Walk back from the accepting cell, collecting which variable each
        // expression defined and the value text read in its value states.
        let mut choices: Vec<Choice> = vec![None; self.ops.len()];
        let mut values: Vec<Vec<u8>> = vec![Vec::new(); self.ops.len()];
        let mut cell = (accept, end);
        while cell != (0, 0) {
            let &(from, by, read) = seen.get(&cell)?;
            let tag = self.tags.get(by as usize).copied().unwrap_or(Tag::None);
            for t in [tag, self.tags[cell.0 as usize]] {
                if let Tag::Var(e, k) | Tag::Value(e, k) = t {
                    choices[e] = Some((k, String::new()));
                }
            }
            if let Tag::Value(e, _) = tag {
                values[e].splice(0..0, read.as_slice().iter().copied());
            }
            cell = from;
        }
        for (e, choice) in choices.iter_mut().enumerate() {
            if let Some((_, value)) = choice {
                let text = core::mem::take(&mut values[e]);
                *value = if self.ops[e].allows_reserved() {
                    String::from_utf8(text).ok()?
                } else {
                    String::from_utf8(percent_decode(&text)).ok()?
                };
            }
        }
        Some(choices)
    }
}

fn percent_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' && i + 2 < text.len() {
            if let (Some(h), Some(l)) = (hex_value(text[i + 1]), hex_value(text[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests;
