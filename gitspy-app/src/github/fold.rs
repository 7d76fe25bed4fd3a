//! PLACEHOLDER until the fold branch lands (replaced wholesale at merge).
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CardKey {
    pub repo_id: i64,
    pub number: i64,
}
pub struct Observations {
    pub repo: Option<RepoObservation>,
    pub item: Option<ItemObservation>,
}
pub struct RepoObservation {
    pub repo_id: i64,
    pub full_name: String,
}
pub struct ItemObservation {
    pub key: CardKey,
    pub title: Option<String>,
}
pub fn observe(_event: &str, payload: &serde_json::Value) -> Observations {
    let repo = payload.get("repository").and_then(|r| {
        Some(RepoObservation {
            repo_id: r.get("id")?.as_i64()?,
            full_name: r.get("full_name")?.as_str()?.to_owned(),
        })
    });
    let item = payload
        .get("issue")
        .or_else(|| payload.get("pull_request"))
        .and_then(|i| {
            Some(ItemObservation {
                key: CardKey {
                    repo_id: repo.as_ref()?.repo_id,
                    number: i.get("number")?.as_i64()?,
                },
                title: i.get("title").and_then(|t| t.as_str()).map(str::to_owned),
            })
        });
    Observations { repo, item }
}
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CardState {
    pub title: Option<String>,
}
impl CardState {
    pub fn merge(&mut self, obs: &ItemObservation) -> bool {
        let changed = self.title != obs.title;
        self.title = obs.title.clone();
        changed
    }
    pub fn is_tombstoned(&self) -> bool {
        false
    }
}
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RepoState {
    pub name: Option<String>,
}
impl RepoState {
    pub fn merge(&mut self, obs: &RepoObservation) -> bool {
        self.name = Some(obs.full_name.clone());
        true
    }
    pub fn full_name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FoldState {
    pub repos: BTreeMap<i64, RepoState>,
    pub cards: BTreeMap<String, CardState>,
}
