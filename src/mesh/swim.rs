//! What foca (the SWIM implementation) needs from us: the identity a node has in
//! the cluster ([`Ident`]) and the byte layout of its datagrams ([`SwimCodec`]).
//!
//! Owns only encoding (pure). The datagrams ride inside [`super::wire::Frame::Swim`],
//! so they are already length-delimited and authenticated; this codec still checks
//! every read, because foca hands it whatever a peer sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut};
use foca::{Header, Incarnation, Member, Message, State};

use crate::sentiment::NodeId;

/// A node as SWIM knows it. `node` is the stable id from redb (foca's `Addr`: one
/// live identity per node id); `generation` tells a rebooted or rejoined node from
/// its previous life, and the larger one wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ident {
    pub node: NodeId,
    /// Where other nodes dial it.
    pub addr: SocketAddr,
    /// Boot time in Unix ms, +1 each time SWIM declared it down and it rejoined.
    pub generation: u64,
}

impl foca::Identity for Ident {
    type Addr = NodeId;

    /// Opt in to automatic rejoin: declared down by mistake (a long GC pause, a
    /// partition), a node comes back at once as its next generation.
    fn renew(&self) -> Option<Self> {
        Some(Ident {
            generation: self.generation + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> NodeId {
        self.node
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, self.addr) > (adversary.generation, adversary.addr)
    }
}

/// Encoding or decoding failed: a short buffer or an unknown tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecError(&'static str);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "swim codec: {}", self.0)
    }
}

impl std::error::Error for CodecError {}

const SHORT: CodecError = CodecError("short buffer");

/// Big-endian, fixed layout: ident = node u64 | generation u64 | 4 or 6 | ip | port u16.
#[derive(Debug, Clone, Copy, Default)]
pub struct SwimCodec;

fn ident_len(id: &Ident) -> usize {
    8 + 8 + 1 + if id.addr.is_ipv4() { 4 } else { 16 } + 2
}

fn put_ident(buf: &mut impl BufMut, id: &Ident) {
    buf.put_u64(id.node);
    buf.put_u64(id.generation);
    match id.addr.ip() {
        IpAddr::V4(ip) => {
            buf.put_u8(4);
            buf.put_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            buf.put_u8(6);
            buf.put_slice(&ip.octets());
        }
    }
    buf.put_u16(id.addr.port());
}

fn get_ident(buf: &mut impl Buf) -> Result<Ident, CodecError> {
    let node = buf.try_get_u64().map_err(|_| SHORT)?;
    let generation = buf.try_get_u64().map_err(|_| SHORT)?;
    let ip = match buf.try_get_u8().map_err(|_| SHORT)? {
        4 => {
            let mut o = [0u8; 4];
            buf.try_copy_to_slice(&mut o).map_err(|_| SHORT)?;
            IpAddr::V4(Ipv4Addr::from(o))
        }
        6 => {
            let mut o = [0u8; 16];
            buf.try_copy_to_slice(&mut o).map_err(|_| SHORT)?;
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return Err(CodecError("unknown address family")),
    };
    let port = buf.try_get_u16().map_err(|_| SHORT)?;
    Ok(Ident {
        node,
        addr: SocketAddr::new(ip, port),
        generation,
    })
}

/// Message tag, and the peer identity plus probe number some messages carry.
fn message_parts(m: &Message<Ident>) -> (u8, Option<(&Ident, u8)>, Option<u8>) {
    match m {
        Message::Ping(n) => (0, None, Some(*n)),
        Message::Ack(n) => (1, None, Some(*n)),
        Message::PingReq {
            target,
            probe_number,
        } => (2, Some((target, *probe_number)), None),
        Message::IndirectPing {
            origin,
            probe_number,
        } => (3, Some((origin, *probe_number)), None),
        Message::IndirectAck {
            target,
            probe_number,
        } => (4, Some((target, *probe_number)), None),
        Message::ForwardedAck {
            origin,
            probe_number,
        } => (5, Some((origin, *probe_number)), None),
        Message::Announce => (6, None, None),
        Message::Feed => (7, None, None),
        Message::Gossip => (8, None, None),
        Message::Broadcast => (9, None, None),
        Message::TurnUndead => (10, None, None),
    }
}

fn get_u8(buf: &mut impl Buf) -> Result<u8, CodecError> {
    buf.try_get_u8().map_err(|_| SHORT)
}

fn get_message(buf: &mut impl Buf) -> Result<Message<Ident>, CodecError> {
    let tag = get_u8(buf)?;
    Ok(match tag {
        0 => Message::Ping(get_u8(buf)?),
        1 => Message::Ack(get_u8(buf)?),
        2..=5 => {
            let id = get_ident(buf)?;
            let probe_number = get_u8(buf)?;
            match tag {
                2 => Message::PingReq {
                    target: id,
                    probe_number,
                },
                3 => Message::IndirectPing {
                    origin: id,
                    probe_number,
                },
                4 => Message::IndirectAck {
                    target: id,
                    probe_number,
                },
                _ => Message::ForwardedAck {
                    origin: id,
                    probe_number,
                },
            }
        }
        6 => Message::Announce,
        7 => Message::Feed,
        8 => Message::Gossip,
        9 => Message::Broadcast,
        10 => Message::TurnUndead,
        _ => return Err(CodecError("unknown message")),
    })
}

impl foca::Codec<Ident> for SwimCodec {
    type Error = CodecError;

    fn encode_header(&mut self, h: &Header<Ident>, mut buf: impl BufMut) -> Result<(), CodecError> {
        let (tag, with_id, number) = message_parts(&h.message);
        let need = ident_len(&h.src)
            + 2
            + ident_len(&h.dst)
            + 1
            + with_id.map_or(0, |(id, _)| ident_len(id) + 1)
            + usize::from(number.is_some());
        if buf.remaining_mut() < need {
            return Err(SHORT);
        }
        put_ident(&mut buf, &h.src);
        buf.put_u16(h.src_incarnation);
        put_ident(&mut buf, &h.dst);
        buf.put_u8(tag);
        if let Some((id, n)) = with_id {
            put_ident(&mut buf, id);
            buf.put_u8(n);
        }
        if let Some(n) = number {
            buf.put_u8(n);
        }
        Ok(())
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<Ident>, CodecError> {
        let src = get_ident(&mut buf)?;
        let src_incarnation = buf.try_get_u16().map_err(|_| SHORT)?;
        let dst = get_ident(&mut buf)?;
        let message = get_message(&mut buf)?;
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(&mut self, m: &Member<Ident>, mut buf: impl BufMut) -> Result<(), CodecError> {
        // Must not write a partial member: check the room first.
        if buf.remaining_mut() < ident_len(m.id()) + 3 {
            return Err(SHORT);
        }
        put_ident(&mut buf, m.id());
        buf.put_u16(m.incarnation());
        buf.put_u8(match m.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        Ok(())
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<Ident>, CodecError> {
        let id = get_ident(&mut buf)?;
        let incarnation: Incarnation = buf.try_get_u16().map_err(|_| SHORT)?;
        let state = match buf.try_get_u8().map_err(|_| SHORT)? {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            _ => return Err(CodecError("unknown member state")),
        };
        Ok(Member::new(id, incarnation, state))
    }
}

/// The header of an encoded datagram, for RTT bookkeeping (`None` if unreadable).
pub(crate) fn peek_header(mut datagram: &[u8]) -> Option<Header<Ident>> {
    foca::Codec::decode_header(&mut SwimCodec, &mut datagram).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Codec;

    fn id(node: u64, addr: &str) -> Ident {
        Ident {
            node,
            addr: addr.parse().unwrap(),
            generation: node * 1000,
        }
    }

    #[test]
    fn headers_and_members_round_trip() {
        let a = id(1, "10.0.0.1:7946");
        let b = id(2, "[2001:db8::2]:7946");
        let messages = [
            Message::Ping(3),
            Message::Ack(250),
            Message::PingReq {
                target: b.clone(),
                probe_number: 9,
            },
            Message::IndirectPing {
                origin: a.clone(),
                probe_number: 1,
            },
            Message::IndirectAck {
                target: b.clone(),
                probe_number: 2,
            },
            Message::ForwardedAck {
                origin: a.clone(),
                probe_number: 0,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ];
        for message in messages {
            let h = Header {
                src: a.clone(),
                src_incarnation: 7,
                dst: b.clone(),
                message,
            };
            let mut buf = Vec::new();
            SwimCodec.encode_header(&h, &mut buf).unwrap();
            assert_eq!(SwimCodec.decode_header(&buf[..]).unwrap(), h);
            assert_eq!(peek_header(&buf), Some(h));
        }
        for state in [State::Alive, State::Suspect, State::Down] {
            let m = Member::new(b.clone(), 65535, state);
            let mut buf = Vec::new();
            SwimCodec.encode_member(&m, &mut buf).unwrap();
            assert_eq!(SwimCodec.decode_member(&buf[..]).unwrap(), m);
        }
    }

    #[test]
    fn short_or_junk_input_is_an_error_and_no_room_writes_nothing() {
        let m = Member::alive(id(5, "127.0.0.1:1"));
        let mut full = Vec::new();
        SwimCodec.encode_member(&m, &mut full).unwrap();
        for cut in 0..full.len() {
            assert!(SwimCodec.decode_member(&full[..cut]).is_err());
        }
        let mut junk = full.clone();
        junk[16] = 9; // address family
        assert!(SwimCodec.decode_member(&junk[..]).is_err());
        let mut small = Vec::new();
        let limited = (&mut small).limit(full.len() - 1);
        assert!(SwimCodec.encode_member(&m, limited).is_err());
        assert!(small.is_empty(), "nothing half-written");
    }

    #[test]
    fn the_newer_generation_wins_an_address_conflict() {
        use foca::Identity;
        let old = id(1, "10.0.0.1:1");
        let new = old.renew().unwrap();
        assert_eq!(new.addr(), old.addr());
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
    }
}
