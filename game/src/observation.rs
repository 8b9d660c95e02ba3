//! Observations: what a tool shows, with the one slot where third-party text (and so the
//! attacker's injection) appears.

/// The marker that shows the attacker where its injection will go.
pub const INJECTION_MARKER: &str = "[[INJECTION]]";

/// A rendered tool output with a slot. The slot holds the injection when there is one,
/// otherwise the episode's benign third-party text.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observation {
    text: String,
    slot: usize,
}

impl Observation {
    /// Writes the observation into `out` with `insert` at the slot.
    pub fn render_into(&self, insert: &str, out: &mut String) {
        out.push_str(&self.text[..self.slot]);
        out.push_str(insert);
        out.push_str(&self.text[self.slot..]);
    }

    /// Length of the text around the slot, in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }
}

/// Builds an [`Observation`]: write text, mark the slot once, finish.
#[derive(Debug, Default)]
pub(crate) struct ObservationBuilder {
    pub text: String,
    slot: Option<usize>,
}

impl ObservationBuilder {
    pub fn new() -> Self {
        Self {
            text: String::with_capacity(256),
            slot: None,
        }
    }

    /// Marks the current end of the text as the slot.
    pub fn mark_slot(&mut self) {
        self.slot = Some(self.text.len());
    }

    /// Finishes; a builder whose slot was never marked gets it at the end.
    pub fn finish(mut self) -> Observation {
        while self.text.ends_with('\n') {
            self.text.pop();
        }
        let slot = self.slot.unwrap_or(self.text.len()).min(self.text.len());
        Observation {
            text: self.text,
            slot,
        }
    }
}
