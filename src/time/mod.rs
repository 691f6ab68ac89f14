//! Time: durations as workflows write them (`7d`), cron schedules read as Vixie cron
//! reads them, and the zones and local times customers live in.

pub mod cron;
pub mod duration;
