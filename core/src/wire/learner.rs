//! The learner's status message.

use arlas_proto::v1;

use super::run::{version_from_wire, version_to_wire};
use crate::error::Result;
use crate::registry::LearnerStatus;

pub fn learner_status_to_wire(s: &LearnerStatus) -> v1::LearnerStatus {
    v1::LearnerStatus {
        versions: s.versions.iter().map(version_to_wire).collect(),
        queue_depth: s.queue_depth,
        queue_capacity: s.queue_capacity,
        max_staleness: s.max_staleness,
        accepted_total: s.accepted_total,
        trained_total: s.trained_total,
    }
}

pub fn learner_status_from_wire(s: &v1::LearnerStatus) -> Result<LearnerStatus> {
    Ok(LearnerStatus {
        versions: s
            .versions
            .iter()
            .map(version_from_wire)
            .collect::<Result<_>>()?,
        queue_depth: s.queue_depth,
        queue_capacity: s.queue_capacity,
        max_staleness: s.max_staleness,
        accepted_total: s.accepted_total,
        trained_total: s.trained_total,
    })
}
