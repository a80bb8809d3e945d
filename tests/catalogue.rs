//! The bad-input catalogue (`docs/bad-input.md`) as a test. Each recipe sends
//! its rows' bad input to a real node and compares the answer, the `type`, the
//! message and the counter with the row's cells: the table is the source of
//! truth, and [`RECIPES`] says which recipe sends which rows.
//! This file: reading the table, checking answers against rows, and the drift
//! checks: `table_and_recipes_agree` keeps the table and the recipes in step
//! (every row has a recipe or names an existing test; every recipe row is in the
//! table), `every_api_error_has_a_row` keeps the table in step with `ApiError`.
//! The recipes: `catalogue/http.rs` (framing, connection limits, the overlay
//! upgrade, draining), `catalogue/dashboard.rs` (the dashboard, its API and
//! sign-in), `catalogue/sources.rs` (the webhook, IRC, the mesh),
//! `catalogue/config.rs` (the command line and config files); and
//! `catalogue/leaks.rs`: `nothing_leaks` throws hostile requests at a node
//! holding known secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::web::Resp;
use crate::common::{TestServer, eventually, http_raw};

/// The command line and config files: `check-config`, unknown keys, bad values.
mod config;
/// The dashboard's pages and API, signing in (password and Twitch), a failing store.
mod dashboard;
/// HTTP framing, connection limits, the overlay upgrade and its closes, draining.
mod http;
/// Hostile requests against a node holding known secrets: none comes back.
mod leaks;
/// Chat sources and the mesh: webhook deliveries, IRC lines, mesh frames.
mod sources;

const DOC: &str = include_str!("../docs/bad-input.md");

/// Which recipe (a test, by its path under `catalogue`) sends which rows.
const RECIPES: &[(&str, &[&str])] = &[
    (
        "http::http_transport",
        &[
            "H01", "H02", "H03", "H04", "H05", "H06", "H07", "H08", "H09", "H10", "H11", "H12",
        ],
    ),
    ("http::http_connections", &["H37", "H38"]),
    (
        "http::overlay_upgrade",
        &[
            "H13", "H14", "H15", "H16", "H17", "H18", "H19", "H20", "W01", "W02", "W03", "W04",
        ],
    ),
    ("http::draining", &["H21", "H36", "W06"]),
    (
        "dashboard::dashboard_api",
        &[
            "H22", "H23", "H24", "H25", "H28", "H29", "H30", "H31", "H32", "P01", "P02", "P03",
            "P04", "P07", "P08", "P09", "P10", "P13", "P19",
        ],
    ),
    ("dashboard::dashboard_limits", &["H33", "P12"]),
    ("dashboard::store_failure", &["H34", "H35", "P05", "P11"]),
    (
        "dashboard::twitch_mode",
        &["H26", "H27", "P06", "P14", "P15", "P16", "P17", "P18"],
    ),
    (
        "sources::webhook",
        &[
            "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12",
            "B13", "B14", "B15",
        ],
    ),
    ("sources::irc_lines", &["I01", "I02", "I03", "I04"]),
    ("sources::mesh_frames", &["M01", "M02", "M03", "M04", "M07"]),
    (
        "config::config_errors",
        &[
            "C01", "C02", "C03", "C04", "C05", "C06", "C07", "C08", "C09", "C10", "C11", "C12",
            "C13", "C14",
        ],
    ),
];

/// The test files a *tested by* cell may name, by module path: the recipes here
/// and the other tests a row may name.
const SOURCES: &[(&str, &str)] = &[
    ("catalogue::config", include_str!("catalogue/config.rs")),
    (
        "catalogue::dashboard",
        include_str!("catalogue/dashboard.rs"),
    ),
    ("catalogue::http", include_str!("catalogue/http.rs")),
    ("catalogue::sources", include_str!("catalogue/sources.rs")),
    ("overlay", include_str!("overlay.rs")),
    ("mesh::hostile", include_str!("mesh/hostile.rs")),
];

// ---- the table --------------------------------------------------------------

/// One row of the catalogue, cells as written (a cell wholly in backticks unquoted).
#[derive(Debug, Clone)]
struct Row {
    id: String,
    answer: String,
    kind: String,
    message: String,
    counted: String,
    tested_by: String,
}

fn unquote(cell: &str) -> String {
    let cell = cell.trim();
    match cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
        Some(inner) if !inner.contains('`') => inner.to_string(),
        _ => cell.to_string(),
    }
}

/// Every table row whose first cell is an id (a capital letter and two digits).
fn rows() -> Vec<Row> {
    DOC.lines()
        .filter_map(|line| {
            let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
            let cells: Vec<String> = inner.split('|').map(unquote).collect();
            let id = cells.first()?;
            let is_id = id.len() == 3
                && id.as_bytes()[0].is_ascii_uppercase()
                && id[1..].bytes().all(|b| b.is_ascii_digit());
            if !is_id {
                return None;
            }
            assert_eq!(cells.len(), 8, "row {id} needs 8 cells: {line}");
            Some(Row {
                id: cells[0].clone(),
                answer: cells[3].clone(),
                kind: cells[4].clone(),
                message: cells[5].clone(),
                counted: cells[6].clone(),
                tested_by: cells[7].clone(),
            })
        })
        .collect()
}

#[test]
fn table_and_recipes_agree() {
    let rows = rows();
    let mut ids = BTreeSet::new();
    for row in &rows {
        assert!(
            ids.insert(row.id.clone()),
            "{} is in the table twice",
            row.id
        );
    }
    let recipe_of: BTreeMap<&str, &str> = RECIPES
        .iter()
        .flat_map(|(recipe, ids)| ids.iter().map(move |id| (*id, *recipe)))
        .collect();
    for row in &rows {
        let (module, name) = row.tested_by.rsplit_once("::").expect("module::test");
        let source = SOURCES
            .iter()
            .find(|(m, _)| *m == module)
            .unwrap_or_else(|| panic!("{}: add {module} to SOURCES", row.id))
            .1;
        assert!(
            source.contains(&format!("#[test]\nfn {name}()")),
            "{}: no test {} in tests/",
            row.id,
            row.tested_by
        );
        let recipe = row.tested_by.strip_prefix("catalogue::");
        assert_eq!(
            recipe_of.get(row.id.as_str()).copied(),
            recipe,
            "{}: tested by {} but RECIPES says otherwise",
            row.id,
            row.tested_by
        );
    }
    for id in recipe_of.keys() {
        assert!(ids.contains(*id), "{id} has a recipe but no row");
    }
}

/// Every `ApiError` in `src/http/response.rs` (status, type and message), and every
/// message given to `BadWebSocket`/`BadInput` in the routes, is some row's answer.
#[test]
fn every_api_error_has_a_row() {
    let rows = rows();
    let has = |status: &str, kind: &str, message: &str| {
        rows.iter()
            .any(|r| r.answer == status && r.kind == kind && r.message == message)
    };
    let source = include_str!("../src/http/response.rs");
    let start = source.find("fn parts(self)").expect("ApiError::parts");
    let end = start
        + source[start..]
            .find("pub fn status")
            .expect("the end of parts");
    let mut seen = 0;
    for arm in source[start..end].split("ApiError::").skip(1) {
        let variant: String = arm.chars().take_while(|c| c.is_alphanumeric()).collect();
        let tuple = arm[arm.find("=> (").expect("an arm") + 4..].trim_start();
        let status: String = tuple.chars().take_while(|c| c.is_ascii_digit()).collect();
        let quoted: Vec<&str> = tuple.split('"').skip(1).step_by(2).take(2).collect();
        seen += 1;
        let [kind, message] = quoted[..] else {
            continue; // the message comes from the call site: checked below
        };
        let listed = has(&status, kind, message);
        assert!(
            listed,
            "ApiError::{variant} ({status} {kind} {message:?}) needs a row in docs/bad-input.md"
        );
    }
    assert!(seen > 20, "parsed {seen} arms of ApiError::parts");
    for (call, status) in [("BadWebSocket(\"", "400"), ("BadInput(\"", "400")] {
        for src in [
            include_str!("../src/http/routes.rs"),
            include_str!("../src/http/dashboard.rs"),
        ] {
            for piece in src.split(call).skip(1) {
                let message = &piece[..piece.find('"').expect("a closing quote")];
                assert!(has(status, "bad_request", message), "{call}{message}\")");
            }
        }
    }
}

// ---- checking answers against rows -------------------------------------------

/// The rows of one recipe; `finish` checks that each was sent.
struct Check {
    recipe: &'static str,
    rows: BTreeMap<String, Row>,
    sent: BTreeSet<String>,
}

impl Check {
    fn new(recipe: &'static str) -> Check {
        let rows = rows().into_iter().map(|r| (r.id.clone(), r)).collect();
        Check {
            recipe,
            rows,
            sent: BTreeSet::new(),
        }
    }

    fn row(&mut self, id: &str) -> Row {
        let row = self.rows.get(id).cloned();
        let row = row.unwrap_or_else(|| panic!("{id} is not in docs/bad-input.md"));
        assert_eq!(row.tested_by, format!("catalogue::{}", self.recipe), "{id}");
        self.sent.insert(id.to_string());
        row
    }

    /// An HTTP answer against row `id`: the status, then the body as the type cell says.
    fn http(&mut self, id: &str, r: &Resp) {
        let row = self.row(id);
        let got = format!("{id}: {}\n{}", r.head, r.body);
        assert_eq!(r.status.to_string(), row.answer, "{got}");
        let html = || {
            let ok = r
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html"));
            assert!(ok && r.body.contains("<html"), "{got}");
        };
        let msg = html_escape(&row.message);
        match row.kind.as_str() {
            "—" => assert!(r.body.is_empty(), "{got}"),
            "(page)" => {
                html();
                let want = format!("<p id=\"message\">{msg}</p>");
                assert!(r.body.contains(&want), "{want} in {got}");
            }
            "(sign-in page)" => {
                html();
                let want = format!("role=\"alert\">{msg}</p>");
                assert!(r.body.contains(&want), "{want} in {got}");
            }
            "(overlay page)" => {
                html();
                assert!(r.body.contains("<title>ChatPulse overlay</title>"), "{got}");
            }
            "(redirect)" => assert_eq!(r.location(), row.message, "{got}"),
            "(probe)" => {
                let want = format!(",\"error\":\"{}\"}}", row.message);
                assert!(r.body.starts_with("{\"status\":\"unhealthy\","), "{got}");
                assert!(r.body.ends_with(&want), "{want} in {got}");
            }
            kind => {
                let json = r
                    .header("content-type")
                    .is_some_and(|t| t == "application/json");
                assert!(json, "{got}");
                let head = format!("{{\"error\":\"{}\",\"type\":\"{kind}\"", row.message);
                let exact = r.body == format!("{head}}}");
                let extended = matches!(kind, "validation" | "conflict")
                    && r.body.starts_with(&format!("{head},"));
                assert!(exact || extended, "{head}}} is {got}");
            }
        }
    }

    /// A WebSocket close (code, reason) against row `id`.
    fn close(&mut self, id: &str, got: Option<(u16, String)>) {
        let row = self.row(id);
        let (code, reason) = got.unwrap_or_else(|| panic!("{id}: no close frame"));
        assert_eq!(format!("close {code}"), row.answer, "{id}");
        assert_eq!(reason, row.message, "{id}");
    }

    /// An answer without a body or message: `closed`, `dropped` or `exit N`.
    fn plain(&mut self, id: &str, answer: &str) {
        let row = self.row(id);
        assert_eq!(answer, row.answer, "{id}");
    }

    /// Waits until row `id`'s counter is above its value in `before` (a `/metrics` page).
    async fn counted(&mut self, id: &str, srv: &TestServer, before: &str) {
        let row = self.row(id);
        if row.counted == "—" {
            return;
        }
        let was = sample(before, &row.counted);
        let what = format!("{id}: {} above {was}", row.counted);
        eventually(&what, Duration::from_secs(10), || {
            (sample(&srv.metrics(), &row.counted) > was).then_some(())
        })
        .await;
    }

    fn finish(self) {
        let want: BTreeSet<String> = RECIPES
            .iter()
            .find(|(r, _)| *r == self.recipe)
            .map(|(_, ids)| ids.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(self.sent, want, "rows sent by {}", self.recipe);
    }
}

/// A sample's value on a `/metrics` page (0 when absent).
fn sample(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

// ---- shared by the recipes ---------------------------------------------------

/// Rate limits high enough that no recipe meets them by chance.
const ROOMY: &str = "[limits]\nauth_per_minute = 100000\nauth_burst = 100000\n\
    dashboard_per_minute = 100000\ndashboard_burst = 100000\n";
const TWO_CHANNELS: &str = "[[channel]]\nlogin = \"alice\"\n\n[[channel]]\nlogin = \"bob\"\n";

/// Sends `bytes` on a new connection; the answer.
async fn raw(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let (status, head, body) = http_raw(addr, bytes).await.expect("an answer");
    Resp { status, head, body }
}
