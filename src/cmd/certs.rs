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
        CertsCommand::Issue {
            dir,
            name,
            role,
            groups,
            days,
            not_after,
        } => {
            let validity =
                not_after.unwrap_or_else(|| swarmcast_certs::Validity::days_from_now(days));
            let paths = swarmcast_certs::issue_groups(&dir, &name, role, &groups, validity)
                .with_context(|| format!("issuing {name}"))?;
            let groups = if groups.is_empty() {
                String::new()
            } else {
                format!(", groups {}", groups.join(", "))
            };
            outln!(
                "issued {role} certificate {} (key {}{groups}), valid until {}",
                paths.cert.display(),
                paths.key.display(),
                validity.not_after_utc()
            )?;
        }
        CertsCommand::Renew {
            dir,
            name,
            identity,
            days,
        } => {
            let leaf = match (identity, name) {
                (Some(identity), _) => identity,
                (None, Some(name)) => {
                    if let Err(e) = swarmcast_certs::validate_name(&name) {
                        crate::cmd::usage_error(&["certs", "renew"], format!("--name: {e}"));
                    }
                    dir.join(name)
                }
                // clap requires one of the two.
                (None, None) => {
                    crate::cmd::usage_error(&["certs", "renew"], "--name or --identity is needed")
                }
            };
            let validity = swarmcast_certs::Validity::days_from_now(days);
            let renewed = swarmcast_certs::renew(&dir, &leaf, validity)
                .with_context(|| format!("renewing {}", leaf.display()))?;
            let until = renewed.not_after_utc();
            outln!(
                "renewed {} certificate {} for {} (NodeId {} kept), valid until {until}",
                renewed.role,
                renewed.paths.cert.display(),
                renewed.name,
                renewed.node_id.short()
            )?;
            if renewed.ca_added {
                outln!(
                    "added the CA of {} to {} (it now trusts both CAs)",
                    dir.display(),
                    renewed.paths.ca.display()
                )?;
            }
        }
    }
    Ok(())
}
