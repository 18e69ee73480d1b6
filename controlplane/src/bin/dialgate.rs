//! `dialgate`: the gateway binary and its offline tools.
fn main() -> anyhow::Result<()> {
    Ok(())
}
