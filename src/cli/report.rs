//! `tidings report --out report.html`: the store's counts and history read as of `--now`,
//! and the page (`analysis::report`) written.

use std::path::Path;
use std::process::ExitCode;

use chrono::{TimeDelta, Utc};

use crate::analysis::counts::order;
use crate::analysis::report::Page;
use crate::cli::args::ReportArgs;
use crate::cli::shared::{CommandError, open_store, time_arg};
use crate::store::rates::rates;
use crate::store::report::{history, week_of};
use crate::store::status::counts;
use crate::workflow::compile::compile_project;

pub fn run(root: &Path, args: &ReportArgs) -> Result<ExitCode, CommandError> {
    let now = time_arg(args.now.as_deref())?;
    if args.weeks == 0 || args.days == 0 {
        return Err(CommandError::Usage(
            "--weeks and --days need at least 1".into(),
        ));
    }
    let (runtime, project, store) = open_store(root)?;
    let compiled = compile_project(&project, &[]);
    let flow_since = (week_of(now.date_naive()) - TimeDelta::weeks(i64::from(args.weeks) - 1))
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let sends_since = (now.date_naive() - TimeDelta::days(i64::from(args.days) - 1))
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let (c, h, r, x) = runtime.block_on(async {
        let mut conn = store.connection().await?;
        let mut c = counts(&mut conn).await?;
        // As of a past moment, stages are as the stage moves recorded then.
        if args.now.is_some() {
            c.stages = crate::store::report::stages_as_of(&mut conn, now).await?;
        }
        let h = history(&mut conn, flow_since, sends_since).await?;
        let r = rates(&mut conn).await?;
        let x = crate::store::results::arms(&mut conn, chrono::DateTime::<Utc>::MIN_UTC).await?;
        let t = crate::store::topics::counts(&mut conn).await?;
        Ok::<_, crate::store::StoreError>((c, h, r, (x, t)))
    })?;
    let (x, t) = x;
    // Every topic of tidings.yaml, with the customers opted out of it.
    let topics: Vec<(String, i64)> = project
        .config
        .topics
        .keys()
        .map(|topic| (topic.clone(), t.get(topic).copied().unwrap_or(0)))
        .collect();
    runtime.block_on(store.close());
    let (stage_order, workflows) = order(&compiled.plan, &c);
    let page = Page {
        now,
        counts: &c,
        history: &h,
        rates: &r,
        arms: &x,
        topics: &topics,
        stage_order: &stage_order,
        workflows: &workflows,
        weeks: (0..args.weeks)
            .map(|k| week_of(flow_since.date_naive()) + TimeDelta::weeks(i64::from(k)))
            .collect(),
        days: (0..args.days)
            .map(|k| sends_since.date_naive() + TimeDelta::days(i64::from(k)))
            .collect(),
    }
    .render()
    .map_err(|e| CommandError::Failed(e.to_string()))?;
    std::fs::write(&args.out, page).map_err(|source| CommandError::Read {
        path: args.out.display().to_string(),
        source,
    })?;
    println!("{}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
