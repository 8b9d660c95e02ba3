//! The two players of the game and values held per player.

use std::fmt;
use std::ops::{Index, IndexMut};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Who plays: the attacker writes injections, the agent acts for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Player {
    Agent,
    Attacker,
}

impl Player {
    /// Both players, agent first.
    pub const ALL: [Player; 2] = [Player::Agent, Player::Attacker];

    /// `agent` or `attacker`: names in files, metrics and flags.
    pub fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Attacker => "attacker",
        }
    }

    /// The other player.
    pub fn opponent(self) -> Self {
        match self {
            Self::Agent => Self::Attacker,
            Self::Attacker => Self::Agent,
        }
    }
}

impl fmt::Display for Player {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Player {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "agent" => Ok(Self::Agent),
            "attacker" => Ok(Self::Attacker),
            other => Err(format!("unknown player {other:?}: use agent or attacker")),
        }
    }
}

/// One value per player, indexable by [`Player`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PerPlayer<T> {
    pub agent: T,
    pub attacker: T,
}

impl<T> PerPlayer<T> {
    pub fn new(agent: T, attacker: T) -> Self {
        Self { agent, attacker }
    }

    /// Builds each player's value from the player.
    pub fn from_fn(mut f: impl FnMut(Player) -> T) -> Self {
        Self {
            agent: f(Player::Agent),
            attacker: f(Player::Attacker),
        }
    }

    /// Applies `f` to each player's value.
    pub fn map<U>(self, mut f: impl FnMut(Player, T) -> U) -> PerPlayer<U> {
        PerPlayer {
            agent: f(Player::Agent, self.agent),
            attacker: f(Player::Attacker, self.attacker),
        }
    }

    /// References to both values.
    pub fn as_ref(&self) -> PerPlayer<&T> {
        PerPlayer {
            agent: &self.agent,
            attacker: &self.attacker,
        }
    }

    /// `(player, value)` pairs, agent first.
    pub fn iter(&self) -> impl Iterator<Item = (Player, &T)> {
        [
            (Player::Agent, &self.agent),
            (Player::Attacker, &self.attacker),
        ]
        .into_iter()
    }
}

impl<T> Index<Player> for PerPlayer<T> {
    type Output = T;
    fn index(&self, player: Player) -> &T {
        match player {
            Player::Agent => &self.agent,
            Player::Attacker => &self.attacker,
        }
    }
}

impl<T> IndexMut<Player> for PerPlayer<T> {
    fn index_mut(&mut self, player: Player) -> &mut T {
        match player {
            Player::Agent => &mut self.agent,
            Player::Attacker => &mut self.attacker,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_index_picks_the_player() {
        for p in Player::ALL {
            assert_eq!(p.name().parse::<Player>().unwrap(), p);
            assert_eq!(p.opponent().opponent(), p);
        }
        assert!("both".parse::<Player>().is_err());
        let mut v = PerPlayer::from_fn(|p| p.name().len());
        assert_eq!((v[Player::Agent], v[Player::Attacker]), (5, 8));
        v[Player::Attacker] = 1;
        assert_eq!(v.map(|_, n| n * 2), PerPlayer::new(10, 2));
        let json = serde_json::to_string(&PerPlayer::new(1, 2)).unwrap();
        assert_eq!(json, r#"{"agent":1,"attacker":2}"#);
    }
}
