//! `dialgate esp seal|open`: pcap in, pcap out, with an SA given on the command line.

use std::process::ExitCode;

pub(crate) fn main(_args: &[String]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("esp: not built yet")
}
