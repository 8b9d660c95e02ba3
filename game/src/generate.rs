//! Procedural generation helpers used by the task templates.

use rand::Rng;
use rand::seq::index;

use crate::GameRng;
use crate::entities::Pools;
use crate::profile::Profile;

/// A generated person: a contact, a payee, the third party who writes in the slot.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub first: &'static str,
    pub name: String,
    pub email: String,
}

/// Everything a task template needs to build its scenario.
pub(crate) struct Gen<'a> {
    pub rng: &'a mut GameRng,
    pub pools: &'static Pools,
    pub profile: &'a Profile,
    /// The third party whose text fills the slot (and so carries injections).
    pub third: Person,
    used_first: Vec<&'static str>,
}

impl<'a> Gen<'a> {
    pub fn new(rng: &'a mut GameRng, pools: &'static Pools, profile: &'a Profile) -> Self {
        let mut used_first = vec![profile.first_name_static()];
        let third = person(rng, pools, &mut used_first, pools.mail_domains);
        Self {
            rng,
            pools,
            profile,
            third,
            used_first,
        }
    }

    /// One entry of `pool` (pools are never empty).
    pub fn pick(&mut self, pool: &'static [&'static str]) -> &'static str {
        pool[self.rng.random_range(0..pool.len())]
    }

    /// `n` distinct entries of `pool`, in random order.
    pub fn pick_distinct(&mut self, pool: &'static [&'static str], n: usize) -> Vec<&'static str> {
        index::sample(self.rng, pool.len(), n.min(pool.len()))
            .into_iter()
            .map(|i| pool[i])
            .collect()
    }

    /// A person with a first name not yet used in this episode.
    pub fn person(&mut self) -> Person {
        person(
            self.rng,
            self.pools,
            &mut self.used_first,
            self.pools.mail_domains,
        )
    }

    /// An account number: two letters and ten digits.
    pub fn iban(&mut self) -> String {
        let country = self.pick(self.pools.iban_countries);
        format!(
            "{country}{:010}",
            self.rng.random_range(0..10_000_000_000u64)
        )
    }

    /// An attacker-controlled account number.
    pub fn attacker_iban(&mut self) -> String {
        let country = self.pick(self.pools.attacker_iban_countries);
        format!(
            "{country}{:010}",
            self.rng.random_range(0..10_000_000_000u64)
        )
    }

    /// An amount in cents between `lo` and `hi` euros.
    pub fn cents(&mut self, lo: u64, hi: u64) -> u64 {
        self.rng.random_range(lo * 100..hi * 100)
    }

    /// A date in 2025.
    pub fn date(&mut self) -> String {
        format!(
            "2025-{:02}-{:02}",
            self.rng.random_range(1..=12u32),
            self.rng.random_range(1..=28u32)
        )
    }

    /// A time on a quarter hour, 08:00 to 18:45.
    pub fn time(&mut self) -> String {
        format!(
            "{:02}:{:02}",
            self.rng.random_range(8..=18u32),
            15 * self.rng.random_range(0..4u32)
        )
    }

    /// A six-character booking code.
    pub fn code(&mut self) -> String {
        const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        (0..6)
            .map(|_| char::from(CHARS[self.rng.random_range(0..CHARS.len())]))
            .collect()
    }

    /// A small integer in `lo..=hi`.
    pub fn int(&mut self, lo: u32, hi: u32) -> u32 {
        self.rng.random_range(lo..=hi)
    }
}

fn person(
    rng: &mut GameRng,
    pools: &'static Pools,
    used: &mut Vec<&'static str>,
    domains: &'static [&'static str],
) -> Person {
    let mut first = pools.first_names[rng.random_range(0..pools.first_names.len())];
    for _ in 0..64 {
        if !used.contains(&first) {
            break;
        }
        first = pools.first_names[rng.random_range(0..pools.first_names.len())];
    }
    used.push(first);
    let last = pools.last_names[rng.random_range(0..pools.last_names.len())];
    let domain = domains[rng.random_range(0..domains.len())];
    Person {
        first,
        name: format!("{first} {last}"),
        email: format!("{}.{}@{domain}", first.to_lowercase(), last.to_lowercase()),
    }
}

/// A lowercase domain-ish slug of a name: `"Acme Ltd"` -> `"acmeltd"`.
pub(crate) fn slug(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}
