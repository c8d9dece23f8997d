//! Reading the prune plans in `plans/` (SPEC §18): which packs are marked for deletion.

use std::collections::HashSet;

use futures::StreamExt;
use repo_format::{Id, PackId, Plan};

use crate::backend::FileType;
use crate::error::{Error, ErrorKind, Result};
use crate::repository::{Repository, get_verified};

/// Plans are read this many at a time.
const CONCURRENCY: usize = 8;

/// One plan as stored.
#[derive(Clone, Debug)]
pub struct StoredPlan {
    /// Its object id (its name).
    pub id: Id,
    /// Its contents.
    pub plan: Plan,
    /// When the storage wrote it, Unix ns on the storage's clock (`None`: not reported).
    pub modified_ns: Option<i64>,
}

/// What `plans/` holds.
#[derive(Clone, Debug, Default)]
pub struct Plans {
    /// The plans that could be read.
    pub plans: Vec<StoredPlan>,
    /// Plans that are damaged, with the reason. A damaged plan marks nothing (its packs are
    /// unknown, so no sweep can delete them); prune removes it.
    pub damaged: Vec<(Id, String)>,
}

impl Plans {
    /// Every pack some plan marks.
    pub fn marked(&self) -> HashSet<PackId> {
        self.plans
            .iter()
            .flat_map(|p| p.plan.packs.iter().copied())
            .collect()
    }

    /// The ids of the plans.
    pub fn ids(&self) -> HashSet<Id> {
        self.plans.iter().map(|p| p.id).collect()
    }
}

/// Lists and reads every plan.
pub fn load_plans(repo: &Repository) -> Result<Plans> {
    let listed = repo
        .block_on(repo.backend().list(FileType::Plan))
        .map_err(|e| Error::backend("cannot list plans/", e))?;
    let backend = repo.backend();
    let keys = repo.keys();
    let loaded: Vec<(Id, Option<i64>, Result<Plan>)> = repo.block_on(
        futures::stream::iter(listed.into_iter().filter_map(|info| {
            let id = Id::from_hex(&info.name).ok()?;
            Some(async move {
                let plan = match get_verified(&**backend, FileType::Plan, &id).await {
                    Ok(bytes) => Plan::decode(keys, &bytes).map_err(|e| {
                        Error::format(format!("prune plan {} is damaged", id.short()), e)
                    }),
                    Err(e) => Err(e),
                };
                (id, info.modified, plan)
            })
        }))
        .buffer_unordered(CONCURRENCY)
        .collect(),
    );
    let mut out = Plans::default();
    for (id, modified_ns, plan) in loaded {
        match plan {
            Ok(plan) => out.plans.push(StoredPlan {
                id,
                plan,
                modified_ns,
            }),
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                out.damaged.push((id, crate::restorer::error_chain(&e)));
            }
            // Deleted between the listing and the read: a sweep finished it.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    out.plans.sort_by_key(|p| (p.modified_ns, p.id));
    out.damaged.sort();
    Ok(out)
}
