//! The HTML of browser routes: the sign-in and dashboard templates, readable
//! error pages (browsers never see raw JSON), and redirects. Templates hold
//! `{{name}}` placeholders; every value is HTML-escaped on the way in.

use super::response::{Response, html_escape};

pub(super) const LOGIN_HTML: &str = include_str!("../../assets/login.html");
pub(super) const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");
const ERROR_HTML: &str = include_str!("../../assets/error.html");

/// `template` with each `{{name}}` replaced by its escaped value.
pub(super) fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("{{{{{name}}}}}"), &html_escape(value));
    }
    out
}

/// A 200 page that no cache keeps (it carries a CSRF token).
pub(super) fn page(html: String) -> Response {
    Response::html(html.into_bytes()).header("cache-control", "no-store")
}

pub(super) fn error_page(status: u16, title: &str, message: &str) -> Response {
    let html = render(
        ERROR_HTML,
        &[
            ("status", &status.to_string()),
            ("title", title),
            ("message", message),
        ],
    );
    let mut resp = page(html);
    resp.status = status;
    resp
}

/// 302 to a path of ours.
pub(super) fn redirect(location: impl Into<String>) -> Response {
    let mut resp = Response::new(302, "text/plain; charset=utf-8", &b""[..])
        .header("location", location.into())
        .header("cache-control", "no-store");
    resp.status = 302;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_every_placeholder_filled() {
        let html = render(
            "<p>{{a}}</p><i>{{a}}</i>{{b}}",
            &[("a", "<x>&"), ("b", "ok")],
        );
        assert_eq!(html, "<p>&lt;x&gt;&amp;</p><i>&lt;x&gt;&amp;</i>ok");
        let resp = error_page(400, "Login cancelled", "<script>");
        assert_eq!(resp.status, 400);
        let body = String::from_utf8(resp.body.to_vec()).unwrap();
        assert!(body.contains("Login cancelled") && body.contains("&lt;script&gt;"));
        assert!(!body.contains("{{"), "every placeholder filled");
        for (template, vars) in [
            (LOGIN_HTML, &["mode", "csrf", "error"][..]),
            (DASHBOARD_HTML, &["mode", "csrf", "user"][..]),
        ] {
            let filled: Vec<(&str, &str)> = vars.iter().map(|v| (*v, "x")).collect();
            assert!(!render(template, &filled).contains("{{"), "{vars:?}");
        }
    }
}
