//! `venue autopilot`: keeps the venue at what the schedule needs now. Each
//! tick it reads the venue's clock, works out which servers exist now by
//! the plan's windows ([`schedule`], rented early by the measured
//! [`lead`] time where the plan's warm-up is too short for it), and
//! converges the cloud to them with the same code as `venue up` and `venue
//! down` (crate::converge): rent, install and deploy what is missing;
//! archive, verify and delete what is no longer wanted. The load decides
//! extra BigBlueButton servers and drains ([`load`]) from the meetings
//! observed ([`observe`]); the extras are kept across restarts ([`extras`]);
//! the portal is told the pool ([`pool`]).

pub mod extras;
pub mod lead;
pub mod load;
pub mod observe;
pub mod pool;
pub mod run;
pub mod schedule;
