//! The label enums of the labelled metric families, one per family, each a fixed set of
//! `&'static str` values (so the number of series is bounded by the code).

use super::Label;

macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($variant:ident => $s:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];
            pub const COUNT: usize = Self::ALL.len();

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $s,)+
                }
            }
        }

        impl Label for $name {
            const ALL: &'static [Self] = $name::ALL;

            #[inline]
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            #[inline]
            fn index(self) -> usize {
                self as usize
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// `websocket_connections_total{result}`.
    WsConnectResult {
        Accepted => "accepted",
        UnknownToken => "unknown_token",
    }
}

label_enum! {
    /// `websocket_connections_rejected_total{reason}`.
    RejectReason {
        RateLimit => "rate_limit",
        GlobalLimit => "global_limit",
        IpLimit => "ip_limit",
        BroadcasterLimit => "broadcaster_limit",
        Origin => "origin",
        BadRequest => "bad_request",
    }
}

label_enum! {
    /// `websocket_inbound_dropped_total{reason}`.
    InboundDropReason {
        TooLarge => "too_large",
        Protocol => "protocol",
    }
}

label_enum! {
    /// `vote_processing_total{result}`.
    VoteResult {
        Applied => "applied",
        NoMatch => "no_match",
        Debounced => "debounced",
        RateLimited => "rate_limited",
        NoViewers => "no_viewers",
        UnknownChannel => "unknown_channel",
        Invalid => "invalid",
        Forwarded => "forwarded",
        Duplicate => "duplicate",
    }
}

label_enum! {
    /// `mesh_members{state}` (as [`crate::mesh::MemberState`]).
    MeshMemberState {
        Alive => "alive",
        Suspect => "suspect",
        Down => "down",
        Left => "left",
    }
}

label_enum! {
    /// `vote_trigger_matches_total{side}`.
    VoteSide {
        For => "for",
        Against => "against",
    }
}

label_enum! {
    /// `chat_messages_received_total{source}`.
    ChatSource {
        Demo => "demo",
        Irc => "irc",
        EventSubWs => "eventsub_ws",
        EventSubWebhook => "eventsub_webhook",
        Test => "test",
        Dashboard => "dashboard",
    }
}

label_enum! {
    /// `auth_logins_total{result}`: how each dashboard sign-in attempt ended.
    LoginResult {
        Success => "success",
        WrongPassword => "wrong_password",
        Cancelled => "cancelled",
        StateMismatch => "state_mismatch",
        TwitchError => "twitch_error",
        Error => "error",
    }
}

label_enum! {
    /// `http_rate_limited_total{class}`: requests answered 429 by the per-IP limits.
    RateClass {
        Auth => "auth",
        Dashboard => "dashboard",
    }
}

label_enum! {
    /// `csrf_rejected_total{reason}`: state-changing requests refused for their CSRF token.
    CsrfReason {
        Missing => "missing",
        Invalid => "invalid",
    }
}

label_enum! {
    /// `chat_lines_dropped_total{reason}`.
    ChatDropReason {
        Malformed => "malformed",
        TooLong => "too_long",
    }
}

label_enum! {
    /// `eventsub_webhook_requests_total{result}`: how each `POST /webhooks/eventsub` ended.
    WebhookResult {
        Notification => "notification",
        Duplicate => "duplicate",
        Verification => "verification",
        Revocation => "revocation",
        Ignored => "ignored",
        Malformed => "malformed",
        BadSignature => "bad_signature",
        Stale => "stale",
        BadRequest => "bad_request",
    }
}

label_enum! {
    /// `eventsub_ws_messages_total{type}`: EventSub WebSocket messages by `message_type`,
    /// plus notifications dropped as already seen and messages we could not read.
    EventSubWsMessage {
        Welcome => "session_welcome",
        Keepalive => "session_keepalive",
        Notification => "notification",
        Reconnect => "session_reconnect",
        Revocation => "revocation",
        Other => "other",
        Duplicate => "duplicate",
        Invalid => "invalid",
    }
}

label_enum! {
    /// `http_bad_requests_total{reason}`.
    BadRequest {
        HeadTooLarge => "head_too_large",
        HeadTimeout => "head_timeout",
        Malformed => "malformed",
        BodyTooLarge => "body_too_large",
        UnsupportedEncoding => "unsupported_encoding",
    }
}

label_enum! {
    /// `http_connections_refused_total{reason}` (and mesh handshakes refused).
    SlotRefused {
        GlobalLimit => "global_limit",
        IpLimit => "ip_limit",
    }
}

label_enum! {
    /// `store_flush_total{result}`.
    FlushResult {
        Ok => "ok",
        Error => "error",
    }
}
