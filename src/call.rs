//! What a handler of the gateway's own endpoints is given about the
//! request it answers, gathered by the pipeline's earlier stages.

use crate::live::Live;
use crate::peer::Peer;
use crate::subject::Subject;

/// One request to a gateway endpoint (login, logout, admin API, ...).
#[derive(Clone, Copy)]
pub struct Call<'a> {
    /// The configuration the request runs under.
    pub live: &'a Live,
    /// The client's connection.
    pub peer: Peer,
    /// Who is asking, if signed in.
    pub subject: Option<&'a Subject>,
}
