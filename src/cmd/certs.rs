//! `swarmcast certs`: the cluster CA and certificate issuance.

use anyhow::{Context, Result};

use crate::cli::CertsCommand;

pub(crate) fn run(command: CertsCommand) -> Result<()> {
    match command {
        CertsCommand::Init { dir } => {
            let paths = swarmcast_certs::init_ca(&dir)
                .with_context(|| format!("creating the CA in {}", dir.display()))?;
            outln!(
                "created {} and {}",
                paths.cert.display(),
                paths.key.display()
            )?;
        }
        CertsCommand::Issue { dir, name, role } => {
            let paths = swarmcast_certs::issue(&dir, &name, role)
                .with_context(|| format!("issuing {name}"))?;
            outln!(
                "issued {role} certificate {} (key {})",
                paths.cert.display(),
                paths.key.display()
            )?;
        }
    }
    Ok(())
}
