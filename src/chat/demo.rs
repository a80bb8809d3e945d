//! Synthetic chat for `chatpulse demo`: a dozen chatters per channel voting in
//! slow waves (opinion swings from "yes" to "no" over ~40 s), plus chatter that
//! matches no trigger, all through the same entry point as real chat.

use std::sync::Arc;
use std::time::Duration;

use smol::Timer;

use crate::app::{App, now_ms};
use crate::chat::{ChatMessage, ChatSource};
use crate::rng::XorShift;

/// One message per channel this often: busy enough to watch, far under the
/// vote token bucket (100/min) once debounce and noise are counted.
const MESSAGE_EVERY: Duration = Duration::from_millis(700);
/// One full swing of opinion.
const WAVE_PERIOD_MS: f64 = 40_000.0;
const CHATTERS: u64 = 12;
const NOISE: [&str; 4] = ["lol", "PogChamp", "hi chat", "gg"];

pub async fn demo_loop(app: Arc<App>) {
    let mut rng = XorShift::new(now_ms());
    log::info!("demo chat running: {} chatters per channel", CHATTERS);
    loop {
        Timer::after(MESSAGE_EVERY).await;
        let now = now_ms();
        let phase = (now as f64 / WAVE_PERIOD_MS * std::f64::consts::TAU).sin();
        for streamer in app.hub.streamers() {
            let config = app.hub.config_of(&streamer.login);
            let Some(config) = config else { continue };
            let roll = rng.unit();
            // P(for) swings between 15 % and 85 %.
            let p_for = 0.5 + 0.35 * phase;
            let text = if roll < 0.15 {
                NOISE[rng.below(NOISE.len() as u64) as usize].to_string()
            } else if rng.unit() < p_for {
                pick(&mut rng, &config.for_triggers)
            } else {
                pick(&mut rng, &config.against_triggers)
            };
            let msg = ChatMessage {
                source: ChatSource::Demo,
                channel: streamer.login.clone(),
                chatter_id: format!("demo-{}", rng.below(CHATTERS)),
                text,
                message_id: None,
                sent_ms: Some(now),
            };
            app.hub.chat(&msg, now);
        }
    }
}

fn pick(rng: &mut XorShift, list: &[String]) -> String {
    list.get(rng.below(list.len().max(1) as u64) as usize)
        .cloned()
        .unwrap_or_default()
}
