//! The overlay page in a real headless Chromium: it connects, moves the ball on
//! votes, shows "reconnecting" when the server goes away and comes back by itself
//! (with the bar where it was) when a new server starts on the same address.
//!
//! Needs Chromium (`/usr/bin/chromium` or `CHATPULSE_TEST_CHROMIUM`). Without it the
//! test prints a loud skip line, unless `CHATPULSE_TEST_REQUIRE_BROWSER=1` (CI) makes
//! that a failure.

use std::path::Path;
use std::time::Duration;

use crate::common::browser::{Page, launch_or_skip};
use crate::common::{ONE_CHANNEL, TEST_TIMEOUT, TestServer, run};

/// Connecting and settling take well under a second locally; the reconnect after
/// a restart can sit in the page's backoff (up to a few seconds by then).
const PAGE_WAIT: Duration = Duration::from_secs(20);

const STATUS: &str = "document.body.dataset.status";
const POSITION: &str = "Number(document.body.dataset.position)";
const TARGET: &str = "Number(document.body.dataset.target)";

async fn wait(page: &Page<'_>, condition: &str) -> String {
    page.wait_for(condition, PAGE_WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn overlay_page_follows_votes_and_survives_a_restart() {
    run(TEST_TIMEOUT, async {
        let Some(browser) = launch_or_skip("browser test").await else {
            return;
        };
        let srv = TestServer::start().await;
        let page = browser.open(&srv.overlay_url("alice")).await.unwrap();
        page.set_viewport(800, 100).await.unwrap(); // the OBS source size for combined mode

        wait(
            &page,
            &format!("{STATUS} === 'live' && Math.abs({POSITION} - 50) < 0.5"),
        )
        .await;
        assert_eq!(
            page.eval("document.body.dataset.mode").await.unwrap(),
            "combined"
        );

        for (chatter, text) in [("v1", "yes"), ("v2", "yes"), ("v3", "yes"), ("v4", "no")] {
            srv.chat("alice", chatter, text).await;
        }
        // 3 for, 1 against: 17 + ((0.75 - 0.25 + 1) / 2) * 66 = 66.5
        let pos = wait(&page, &format!("{POSITION} > 60 && {POSITION}")).await;
        eprintln!("ball at {pos}% after 3 yes / 1 no");

        let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/overlay-screenshot.png");
        page.screenshot(&shot).await.unwrap();
        let png = std::fs::read(&shot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "not a PNG: {}",
            shot.display()
        );
        assert!(
            png.len() > 1024,
            "suspiciously small screenshot: {} bytes",
            png.len()
        );

        let addr = srv.addr;
        let data_dir = srv.stop().await;
        wait(&page, &format!("{STATUS} === 'reconnecting'")).await;

        let srv = TestServer::start_with(ONE_CHANNEL, Some(data_dir), Some(addr)).await;
        wait(&page, &format!("{STATUS} === 'live'")).await;
        // The page keeps its last picture while disconnected, so look at where the new
        // snapshot sends the ball: it carries the persisted votes, the bar stays right.
        let target = page.eval(TARGET).await.unwrap();
        assert!(
            target.parse::<f64>().unwrap() > 60.0,
            "after the restart the ball heads to {target}%"
        );
        wait(&page, &format!("Math.abs({POSITION} - {TARGET}) < 0.01")).await;
        srv.stop().await;
    });
}
