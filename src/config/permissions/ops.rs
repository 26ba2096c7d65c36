//! Operators and values of criteria and advice, parsed once and applied
//! without allocating in the case-sensitive path.

use std::cmp::Ordering;

/// A comparison. Several values mean "any of them" for the positive
/// operators and "none of them" for `!=` and `not in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    Eq,
    Ne,
    In,
    NotIn,
    Contains,
    StartsWith,
    Lt,
    Le,
    Gt,
    Ge,
    IsEmpty,
    IsNotEmpty,
}

impl Operator {
    /// The spellings rules use: `=`, `!=`, `in`, `not in`, `contains`,
    /// `starts with`, `<`, `<=`, `>`, `>=`, `is empty`, `is not empty`
    /// (words case-blind, spaces or underscores).
    pub fn parse(s: &str) -> Result<Operator, String> {
        let words: Vec<String> = s
            .split(|c: char| c.is_whitespace() || c == '_')
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let op = match words.join(" ").as_str() {
            "=" | "==" | "equals" => Operator::Eq,
            "!=" | "<>" | "not equals" => Operator::Ne,
            "in" => Operator::In,
            "not in" => Operator::NotIn,
            "contains" => Operator::Contains,
            "starts with" => Operator::StartsWith,
            "<" => Operator::Lt,
            "<=" => Operator::Le,
            ">" => Operator::Gt,
            ">=" => Operator::Ge,
            "is empty" => Operator::IsEmpty,
            "is not empty" => Operator::IsNotEmpty,
            _ => {
                return Err(format!(
                    "`{s}` is not an operator (=, !=, in, not in, contains, starts with, <, <=, >, >=, is empty, is not empty)"
                ))
            }
        };
        Ok(op)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Eq => "=",
            Operator::Ne => "!=",
            Operator::In => "in",
            Operator::NotIn => "not in",
            Operator::Contains => "contains",
            Operator::StartsWith => "starts with",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
            Operator::IsEmpty => "is empty",
            Operator::IsNotEmpty => "is not empty",
        }
    }

    /// Whether `have` (absent: `None`) passes against `values`. Values
    /// given case-blind must already be lower-cased (see [`fold`]), and
    /// `have` is folded here.
    pub fn test<S: AsRef<str>>(
        self,
        have: Option<&str>,
        values: &[S],
        case_sensitive: bool,
    ) -> bool {
        let folded;
        let have = match (have, case_sensitive) {
            (Some(h), false) => {
                folded = fold(h);
                Some(folded.as_str())
            }
            (h, _) => h,
        };
        let any = |f: &dyn Fn(&str, &str) -> bool| {
            have.is_some_and(|h| values.iter().any(|v| f(h, v.as_ref())))
        };
        match self {
            Operator::IsEmpty => have.is_none_or(str::is_empty),
            Operator::IsNotEmpty => have.is_some_and(|h| !h.is_empty()),
            Operator::Eq | Operator::In => any(&|h, v| h == v),
            // An absent value differs from every value.
            Operator::Ne | Operator::NotIn => !any(&|h, v| h == v),
            Operator::Contains => any(&|h, v| h.contains(v)),
            Operator::StartsWith => any(&|h, v| h.starts_with(v)),
            Operator::Lt => any(&|h, v| compare(h, v) == Ordering::Less),
            Operator::Le => any(&|h, v| compare(h, v) != Ordering::Greater),
            Operator::Gt => any(&|h, v| compare(h, v) == Ordering::Greater),
            Operator::Ge => any(&|h, v| compare(h, v) != Ordering::Less),
        }
    }
}

/// Numbers compare as numbers when both sides are numbers (`9 < 10`),
/// everything else as text (ISO dates compare right as text).
pub fn compare(a: &str, b: &str) -> Ordering {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(x), Ok(y)) if x.is_finite() && y.is_finite() => {
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        _ => a.cmp(b),
    }
}

/// Case folding for case-blind comparisons.
pub fn fold(s: &str) -> String {
    s.to_lowercase()
}

/// A value as written in a rule: a literal, or `${user.NAME}`, the
/// requesting user's own attribute ("the record's owner is the user").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Literal(String),
    User(String),
    Bad(String),
}

impl Value {
    pub fn parse(s: &str) -> Value {
        match s.strip_prefix("${") {
            None => Value::Literal(s.to_string()),
            Some(rest) => match rest.strip_suffix('}').and_then(|r| r.strip_prefix("user.")) {
                Some(name) if !name.is_empty() && !name.contains(['{', '}']) => {
                    Value::User(name.to_string())
                }
                _ => Value::Bad(format!(
                    "`{s}`: a value starting with `${{` names a user attribute as `${{user.NAME}}`"
                )),
            },
        }
    }

    pub fn is_user_ref(&self) -> bool {
        matches!(self, Value::User(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_parse_in_their_spellings() {
        assert_eq!(Operator::parse("=").unwrap(), Operator::Eq);
        assert_eq!(Operator::parse("Not In").unwrap(), Operator::NotIn);
        assert_eq!(
            Operator::parse("starts_with").unwrap(),
            Operator::StartsWith
        );
        assert_eq!(Operator::parse(" is  empty ").unwrap(), Operator::IsEmpty);
        assert!(Operator::parse("like")
            .unwrap_err()
            .contains("not an operator"));
        for op in [
            Operator::Eq,
            Operator::Ne,
            Operator::In,
            Operator::NotIn,
            Operator::Contains,
            Operator::StartsWith,
            Operator::Lt,
            Operator::Le,
            Operator::Gt,
            Operator::Ge,
            Operator::IsEmpty,
            Operator::IsNotEmpty,
        ] {
            assert_eq!(Operator::parse(op.as_str()).unwrap(), op);
        }
    }

    #[test]
    fn tests_follow_their_operator() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(Operator::Eq.test(Some("BU1"), &v(&["BU2", "BU1"]), true));
        assert!(!Operator::Eq.test(Some("bu1"), &v(&["BU1"]), true));
        assert!(Operator::Eq.test(Some("bu1"), &v(&["bu1"]), false));
        assert!(Operator::Ne.test(None, &v(&["BU1"]), true));
        assert!(!Operator::NotIn.test(Some("a"), &v(&["b", "a"]), true));
        assert!(Operator::Contains.test(Some("Product A"), &v(&["duct"]), true));
        assert!(Operator::StartsWith.test(Some("Product A"), &v(&["Prod"]), true));
        assert!(Operator::Lt.test(Some("9"), &v(&["10"]), true));
        assert!(!Operator::Lt.test(Some("b"), &v(&["a"]), true));
        assert!(Operator::Ge.test(Some("2025-08-01"), &v(&["2025-07-31"]), true));
        assert!(!Operator::Gt.test(None, &v(&["1"]), true));
        assert!(Operator::IsEmpty.test(Some(""), &[] as &[String], true));
        assert!(Operator::IsEmpty.test(None, &[] as &[String], true));
        assert!(Operator::IsNotEmpty.test(Some("x"), &[] as &[String], true));
    }

    #[test]
    fn values_name_user_attributes() {
        assert_eq!(Value::parse("BU1"), Value::Literal("BU1".into()));
        assert_eq!(
            Value::parse("${user.Business Unit}"),
            Value::User("Business Unit".into())
        );
        assert!(matches!(Value::parse("${user.}"), Value::Bad(_)));
        assert!(matches!(Value::parse("${owner}"), Value::Bad(_)));
    }
}
