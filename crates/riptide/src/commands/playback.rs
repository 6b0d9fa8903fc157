//! `riptide playback`: how a file plays on a device, and the device
//! profiles we know.

use anyhow::Context;
use std::path::PathBuf;
use streaming::decision::{Options, plan_file};
use streaming::profiles;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Decide how FILE plays on a device: direct play, remux, audio
    /// transcode or transcode, with the reasons and the ffmpeg plan.
    Plan {
        file: PathBuf,
        /// Device profile (see `riptide playback profiles`).
        #[arg(long, default_value = "chrome")]
        profile: String,
        /// Print JSON (decision, reasons, ffmpeg plan).
        #[arg(long)]
        json: bool,
    },
    /// List the built-in device profiles.
    Profiles {
        /// Print each profile in full as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Sub::Profiles { json } => {
            for name in profiles::names() {
                let p = profiles::builtin(name).expect("listed");
                if json {
                    println!("{}", serde_json::to_string(&p)?);
                } else {
                    let video: Vec<&str> = p.video.iter().map(|r| r.codec.as_str()).collect();
                    let audio: Vec<&str> = p.audio.iter().map(|r| r.codec.as_str()).collect();
                    println!(
                        "{name:<11} {:<10} containers {}; video {}; audio {}",
                        p.display,
                        p.containers.join(","),
                        video.join(","),
                        audio.join(",")
                    );
                }
            }
            Ok(())
        }
        Sub::Plan {
            file,
            profile,
            json,
        } => {
            let p = profiles::builtin(&profile).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown profile {profile:?}; known profiles: {}",
                    profiles::names().join(", ")
                )
            })?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let (_info, d) = runtime.block_on(plan_file(&file, &p, &Options::default()))?;
            let output = streaming::pretranscode::output_path(
                &file,
                streaming::pretranscode::OutputFormat::Mp4,
            );
            let job = d.job(
                ffmpeg::Input::File(file.clone()),
                ffmpeg::Output::Mp4 {
                    path: output.clone(),
                },
            );
            let args = match &job {
                Some(j) => Some(j.args(None)?),
                None => None,
            };
            if json {
                let v = serde_json::json!({
                    "file": file,
                    "profile": d.profile,
                    "decision": d.decision,
                    "reasons": d.reasons,
                    "source_container": d.source_container,
                    "subtitles": d.subtitles,
                    "ffmpeg": {
                        "container": d.target_container,
                        "video_stream": d.video_stream,
                        "audio_stream": d.audio_stream,
                        "video": d.video,
                        "audio": d.audio,
                        "output": job.as_ref().map(|_| output.clone()),
                        "args": args,
                    },
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{}: {} on {}",
                    file.display(),
                    d.decision.as_str(),
                    p.display
                );
                for r in &d.reasons {
                    println!("  - {r}");
                }
                if let Some(a) = args {
                    println!("ffmpeg plan (to {}):", output.display());
                    // Shown quoted for reading; it is run as a vector.
                    let shown: Vec<String> = a.iter().map(|x| format!("{x:?}")).collect();
                    println!("  ffmpeg {}", shown.join(" "));
                }
            }
            Ok(())
        }
    }
}
