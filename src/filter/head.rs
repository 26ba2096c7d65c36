//! What the filters read from an answer's header before deciding whether
//! and how its body can be filtered.

use pingora::http::ResponseHeader;

use super::FilterError;

/// An answer's type, encoding and declared length, read once and
/// lower-cased: the partner, privacy and permission filters each decide
/// from the same three values, the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `Content-Type`, lower-cased, parameters included; empty when absent.
    pub content_type: String,
    /// `Content-Encoding`, lower-cased; empty when absent.
    pub encoding: String,
    /// `Content-Length` when it is a number.
    pub length: Option<usize>,
}

impl Head {
    pub fn of(resp: &ResponseHeader) -> Head {
        let header = |name: http::header::HeaderName| {
            resp.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_ascii_lowercase()
        };
        Head {
            content_type: header(http::header::CONTENT_TYPE),
            encoding: header(http::header::CONTENT_ENCODING),
            length: header(http::header::CONTENT_LENGTH).parse().ok(),
        }
    }

    /// Any JSON type: `application/json`, `application/vnd.api+json`...
    pub fn is_json(&self) -> bool {
        self.content_type.contains("json")
    }

    pub fn is_html(&self) -> bool {
        self.content_type.starts_with("text/html")
    }

    /// The gateway asks for plain answers when it filters; an app that
    /// compresses anyway sends a body no filter can read.
    pub fn compressed(&self) -> bool {
        !self.encoding.is_empty() && self.encoding != "identity"
    }

    /// The refusal for a compressed answer; `what` is "answer" or "page".
    pub fn compressed_error(&self, what: &str) -> FilterError {
        FilterError::malformed(format!(
            "the {what} is compressed (`{}`) although the gateway asked for it plain",
            self.encoding
        ))
    }

    /// The body is about to be rewritten: its length and entity tag no
    /// longer hold. Without a length pingora sends the new body chunked.
    pub fn body_rewritten(resp: &mut ResponseHeader) {
        resp.remove_header(&http::header::CONTENT_LENGTH);
        resp.remove_header(&http::header::ETAG);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(headers: &[(&'static str, &str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (k, v) in headers {
            r.insert_header(*k, v.to_string()).unwrap();
        }
        r
    }

    #[test]
    fn reads_type_encoding_and_length_case_blind() {
        let h = Head::of(&resp(&[
            ("content-type", "Application/Vnd.Api+JSON; charset=UTF-8"),
            ("content-encoding", "GZip"),
            ("content-length", "42"),
        ]));
        assert!(h.is_json() && !h.is_html() && h.compressed());
        assert_eq!(h.length, Some(42));
        assert!(h.compressed_error("page").to_string().contains("`gzip`"));
    }

    #[test]
    fn identity_or_no_encoding_is_plain_and_a_bad_length_is_none() {
        let plain = Head::of(&resp(&[
            ("content-type", "TEXT/HTML"),
            ("content-encoding", "identity"),
            ("content-length", "12x"),
        ]));
        assert!(plain.is_html() && !plain.compressed() && plain.length.is_none());
        assert!(!Head::of(&resp(&[])).compressed());
    }

    #[test]
    fn a_rewritten_body_loses_its_length_and_etag() {
        let mut r = resp(&[("content-length", "3"), ("etag", "\"x\""), ("vary", "a")]);
        Head::body_rewritten(&mut r);
        assert!(r.headers.get("content-length").is_none() && r.headers.get("etag").is_none());
        assert!(r.headers.get("vary").is_some());
    }
}
