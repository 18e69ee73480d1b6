//! Sans-IO IKEv2 protocol core (RFC 7296): no sockets, no clock, no threads.
//!
//! Layers, bottom up: [`codec`] (bounds-checked reader), [`message`] (header, payloads, chain),
//! [`crypto`] (PRF, prf+, DH groups, SK transforms), [`keymat`] (SKEYSEED, SK_*, CHILD_SA
//! KEYMAT), [`sk`] (sealing and opening Encrypted payloads, RFC 7383 fragments), [`proposal`]
//! (FortiOS proposal names to offers, responder choice), [`eap`] (EAP and MSCHAPv2 packets) and
//! [`responder`] (the IKE_SA_INIT / IKE_AUTH state machine, driven quinn-proto style) and
//! [`initiator`] (dialgate's own client, the same way).
//! Time, randomness and user verification are injected by the caller.

pub mod codec;
pub mod crypto;
pub mod eap;
pub mod error;
pub mod initiator;
pub mod keymat;
pub mod message;
pub mod proposal;
pub mod responder;
pub mod sk;

pub use error::{DecodeError, Error};
