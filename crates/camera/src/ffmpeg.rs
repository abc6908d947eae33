//! Video sources through ffmpeg, run as a subprocess: RTSP, HTTP(S) streams (MJPEG, HLS, ...),
//! V4L2 devices (`/dev/videoN`) and video files all come back as raw RGB frames.
//!
//! ffmpeg writes the frames to its stdout as a stream of binary PPM images (`-f image2pipe
//! -c:v ppm`): each is a short header with its width and height, then `width * height * 3`
//! bytes of RGB. So frames come back as pixels, sized by the stream itself, without parsing
//! ffmpeg's human-readable log. The detect rate is ffmpeg's `fps` filter: it decodes every
//! frame of the stream and hands over at most `fps` a second, so a 30 fps 1080p camera sampled
//! at 5 fps costs one pipe transfer of 5 frames a second, not 30.
//!
//! ffmpeg is found at an explicit path, else on `PATH`, else in the project's tools venv
//! (`cargo xtask tools` installs the `imageio-ffmpeg` wheel, a static ffmpeg 9 for x86_64 and
//! aarch64). When none is found, [`find_ffmpeg`] says how to get one.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// Largest frame accepted from ffmpeg: 8K UHD. A header announcing more is a broken stream.
pub const MAX_PIXELS: u64 = 7680 * 4320;

/// What kind of source a `--source` string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Rtsp,
    /// `http://` or `https://`: MJPEG, HLS or anything else ffmpeg reads.
    Http,
    /// A V4L2 device, `/dev/videoN`.
    Device,
    /// A video file.
    File,
}

impl SourceKind {
    #[must_use]
    pub fn of(source: &str) -> Self {
        let lower = source.to_ascii_lowercase();
        if lower.starts_with("rtsp://") || lower.starts_with("rtsps://") {
            Self::Rtsp
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            Self::Http
        } else if source.starts_with("/dev/video") {
            Self::Device
        } else {
            Self::File
        }
    }

    /// Live sources reconnect when they drop; files end.
    #[must_use]
    pub fn is_live(self) -> bool {
        !matches!(self, Self::File)
    }
}

/// `source` with any password (and user) in its URL replaced by `***`, for logs, metrics and
/// errors: `rtsp://admin:secret@cam/stream` becomes `rtsp://***@cam/stream`.
#[must_use]
pub fn redact(source: &str) -> String {
    let Some(scheme_end) = source.find("://") else { return source.to_owned() };
    let rest = &source[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}://***{}", &source[..scheme_end], &rest[at..]),
        None => source.to_owned(),
    }
}

/// `text` (ffmpeg's messages) with `source` redacted wherever it appears, and its password (or
/// user, when there is no password) hidden even where ffmpeg printed the URL in another form.
#[must_use]
pub fn redact_in(text: &str, source: &str) -> String {
    let mut out = text.replace(source, &redact(source));
    let userinfo = source.split_once("://").and_then(|(_, rest)| {
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        authority.rfind('@').map(|at| &authority[..at])
    });
    if let Some(userinfo) = userinfo {
        let secret = userinfo.split_once(':').map_or(userinfo, |(_, password)| password);
        for hidden in [userinfo, secret] {
            // A one- or two-letter secret would blank out ordinary words; the URL itself is
            // already redacted above.
            if hidden.len() >= 3 {
                out = out.replace(hidden, "***");
            }
        }
    }
    out
}

/// ffmpeg could not be found.
#[derive(Debug, thiserror::Error)]
#[error(
    "ffmpeg not found{tried}. Install it with `cargo xtask tools` (the imageio-ffmpeg wheel, a \
     static ffmpeg for linux x86_64 and aarch64), or `apt-get install ffmpeg` (Debian, Raspberry \
     Pi OS), or pass --ffmpeg PATH"
)]
pub struct FfmpegMissing {
    tried: String,
}

/// Finds ffmpeg: `explicit` if given (it must exist), else `ffmpeg` on `PATH`, else the one the
/// imageio-ffmpeg wheel put in `tools_venv` (`<venv>/lib/python3.*/site-packages/imageio_ffmpeg/
/// binaries/ffmpeg-*`).
pub fn find_ffmpeg(explicit: Option<&Path>, tools_venv: Option<&Path>) -> Result<PathBuf, FfmpegMissing> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_owned())
        } else {
            Err(FfmpegMissing { tried: format!(" at {}", p.display()) })
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("ffmpeg");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    if let Some(venv) = tools_venv {
        let lib = venv.join("lib");
        let pythons = std::fs::read_dir(&lib).into_iter().flatten().flatten();
        for python in pythons {
            let binaries = python.path().join("site-packages/imageio_ffmpeg/binaries");
            let mut found: Vec<PathBuf> = std::fs::read_dir(&binaries)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("ffmpeg-")))
                .collect();
            found.sort();
            if let Some(p) = found.pop() {
                return Ok(p);
            }
        }
    }
    Err(FfmpegMissing { tried: " on PATH or in the tools venv".to_owned() })
}

/// How to run ffmpeg for one source.
#[derive(Debug, Clone)]
pub struct FfmpegArgs {
    /// Frames per second handed over (ffmpeg's `fps` filter); `None`: every decoded frame.
    pub fps: Option<f64>,
    /// Scale frames wider than this down (aspect kept) before they leave ffmpeg.
    pub max_width: Option<u32>,
    /// Read files at their native frame rate (`-re`), as a live camera would deliver them.
    pub realtime: bool,
    /// Replay files from the start when they end (`-stream_loop -1`).
    pub looped: bool,
}

impl FfmpegArgs {
    /// The full ffmpeg argument list for `source`.
    #[must_use]
    pub fn command_line(&self, source: &str) -> Vec<String> {
        let mut args: Vec<String> = ["-nostdin", "-hide_banner", "-loglevel", "error"].map(String::from).to_vec();
        match SourceKind::of(source) {
            // TCP: no lost packets, no smeared frames; what Frigate's presets use too.
            SourceKind::Rtsp => args.extend(["-rtsp_transport", "tcp", "-timeout", "10000000"].map(String::from)),
            // `-timeout` bounds the connect (else ffmpeg's own 5 s), `-rw_timeout` a stall once
            // connected. MJPEG carries no timestamps (ffmpeg would assume 25 fps and the fps
            // filter would sample wrongly): the arrival time is the frame's time. Not for HLS,
            // whose segments arrive in bursts but carry their own timestamps.
            SourceKind::Http => {
                args.extend(["-timeout", "10000000", "-rw_timeout", "10000000"].map(String::from));
                if !source.to_ascii_lowercase().contains(".m3u8") {
                    args.extend(["-use_wallclock_as_timestamps", "1"].map(String::from));
                }
            }
            SourceKind::Device => args.extend(["-f", "v4l2"].map(String::from)),
            SourceKind::File => {
                if self.looped {
                    args.extend(["-stream_loop", "-1"].map(String::from));
                }
                if self.realtime {
                    args.push("-re".into());
                }
            }
        }
        args.extend(["-i".to_owned(), source.to_owned(), "-an".into(), "-sn".into()]);
        let mut filters = Vec::new();
        if let Some(fps) = self.fps.filter(|f| f.is_finite() && *f > 0.0) {
            filters.push(format!("fps={fps}"));
        }
        if let Some(w) = self.max_width {
            // Never upscale; -2 keeps the height even, which some encoders need.
            filters.push(format!("scale='min(iw,{w})':-2"));
        }
        if !filters.is_empty() {
            args.extend(["-vf".to_owned(), filters.join(",")]);
        }
        args.extend(["-f", "image2pipe", "-c:v", "ppm", "-pix_fmt", "rgb24", "-"].map(String::from));
        args
    }
}

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    /// `width * height * 3` bytes, rows top to bottom.
    pub rgb: Vec<u8>,
    /// When the frame came out of ffmpeg.
    pub decoded_at: SystemTime,
}

/// What went wrong reading frames.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot start {ffmpeg}: {source}")]
    Spawn { ffmpeg: String, source: std::io::Error },
    #[error("ffmpeg sent a frame header that is not binary PPM: {0}")]
    BadHeader(String),
    #[error("ffmpeg sent a {width}x{height} frame, larger than {MAX_PIXELS} pixels")]
    TooLarge { width: u64, height: u64 },
    #[error("reading from ffmpeg: {0}")]
    Io(#[from] std::io::Error),
}

/// Lines of ffmpeg's stderr kept to explain an exit.
const STDERR_LINES: usize = 3;

/// A running ffmpeg and the frames it writes.
#[derive(Debug)]
pub struct FfmpegReader {
    child: Child,
    frames: PpmReader<ChildStdout>,
    /// The last lines ffmpeg printed, read continuously by a task of their own: a pipe nobody
    /// reads fills up after 64 KiB of decode warnings, and then ffmpeg (and the camera) stalls.
    stderr: Arc<Mutex<VecDeque<String>>>,
    stderr_task: tokio::task::JoinHandle<()>,
}

impl FfmpegReader {
    /// Starts `ffmpeg` on `source`. Its stderr (errors only, `-loglevel error`) is read by a
    /// task that keeps the last lines for [`FfmpegReader::finish`] to explain an exit.
    pub fn spawn(ffmpeg: &Path, source: &str, args: &FfmpegArgs) -> Result<Self, SourceError> {
        let mut child = Command::new(ffmpeg)
            .args(args.command_line(source))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| SourceError::Spawn { ffmpeg: ffmpeg.display().to_string(), source })?;
        let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("ffmpeg has no stdout"))?;
        let stderr = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_LINES)));
        let stderr_task = match child.stderr.take() {
            Some(pipe) => tokio::spawn(keep_last_lines(pipe, Arc::clone(&stderr))),
            None => tokio::spawn(async {}),
        };
        Ok(Self { child, frames: PpmReader::new(stdout), stderr, stderr_task })
    }

    /// CPU time (user + system) ffmpeg has used so far, in seconds (Linux; `None` elsewhere or
    /// once it exited).
    #[must_use]
    pub fn cpu_seconds(&self) -> Option<f64> {
        edgepool_runtime::process::cpu_seconds(self.child.id()?)
    }

    /// ffmpeg's resident memory, in MiB (Linux; `None` elsewhere or once it exited).
    #[must_use]
    pub fn rss_mib(&self) -> Option<f64> {
        edgepool_runtime::process::rss_mib(self.child.id()?)
    }

    /// The next frame, or `None` when ffmpeg closed its output (the file ended, the stream
    /// dropped, ffmpeg failed: [`FfmpegReader::finish`] tells which).
    pub async fn next_frame(&mut self) -> Result<Option<RgbFrame>, SourceError> {
        self.frames.next_frame().await
    }

    /// Stops ffmpeg and returns its exit status with the last lines it printed, `source`
    /// redacted from them. With `wait`, ffmpeg gets two seconds to exit on its own first (it
    /// closes its output just before it exits, so a file that ended is not a kill); without,
    /// it is killed at once (a signal, or enough frames).
    pub async fn finish(mut self, source: &str, wait: bool) -> (Option<i32>, String) {
        let exited = if wait {
            tokio::time::timeout(std::time::Duration::from_secs(2), self.child.wait()).await.ok().and_then(Result::ok)
        } else {
            None
        };
        let status = match exited {
            Some(s) => s.code(),
            None => {
                let _ = self.child.start_kill();
                self.child.wait().await.ok().and_then(|s| s.code())
            }
        };
        // ffmpeg exited, so its stderr is at its end: the task finishes with the last lines.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), &mut self.stderr_task).await;
        self.stderr_task.abort();
        let lines = self.stderr.lock().map(|l| l.iter().cloned().collect::<Vec<_>>()).unwrap_or_default();
        (status, redact_in(&lines.join(" / "), source))
    }
}

/// Reads `pipe` to its end, keeping the last [`STDERR_LINES`] non-empty lines in `into`.
async fn keep_last_lines(pipe: impl AsyncRead + Unpin, into: Arc<Mutex<VecDeque<String>>>) {
    let mut pipe = BufReader::new(pipe);
    let mut buf = Vec::new();
    // Bytes, not `lines()`: one line that is not UTF-8 must not end the reading.
    while pipe.read_until(b'\n', &mut buf).await.is_ok_and(|n| n > 0) {
        let text = String::from_utf8_lossy(&buf).into_owned();
        buf.clear();
        let line = text.trim();
        if line.is_empty() {
            continue;
        }
        if let Ok(mut kept) = into.lock() {
            if kept.len() == STDERR_LINES {
                kept.pop_front();
            }
            kept.push_back(line.chars().take(300).collect());
        }
    }
}

/// Parses a stream of binary PPM (`P6`, maxval 255) images.
#[derive(Debug)]
pub struct PpmReader<R> {
    inner: BufReader<R>,
}

impl<R: AsyncRead + Unpin> PpmReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner: BufReader::with_capacity(1 << 20, inner) }
    }

    /// The next image, or `None` at a clean end of stream (between images).
    pub async fn next_frame(&mut self) -> Result<Option<RgbFrame>, SourceError> {
        let Some(magic) = self.token().await? else { return Ok(None) };
        if magic != "P6" {
            return Err(SourceError::BadHeader(format!("magic {magic:?}")));
        }
        let mut fields = [0u64; 3];
        for (f, name) in fields.iter_mut().zip(["width", "height", "maxval"]) {
            let t = self.token().await?.ok_or_else(|| SourceError::BadHeader(format!("ended before the {name}")))?;
            *f = t.parse().map_err(|_| SourceError::BadHeader(format!("{name} {t:?}")))?;
        }
        let [width, height, maxval] = fields;
        if maxval != 255 {
            return Err(SourceError::BadHeader(format!("maxval {maxval}, expected 255")));
        }
        if width == 0 || height == 0 || width.saturating_mul(height) > MAX_PIXELS {
            return Err(SourceError::TooLarge { width, height });
        }
        let (width, height) = (width as usize, height as usize);
        let mut rgb = vec![0u8; width * height * 3];
        self.inner.read_exact(&mut rgb).await?;
        Ok(Some(RgbFrame { width, height, rgb, decoded_at: SystemTime::now() }))
    }

    /// The next whitespace-separated header token (after the token, exactly one whitespace
    /// byte is consumed, as PPM requires before the pixels). `None` at end of stream before
    /// any byte of it.
    async fn token(&mut self) -> Result<Option<String>, SourceError> {
        let mut token = Vec::new();
        loop {
            let buf = self.inner.fill_buf().await?;
            let Some(&b) = buf.first() else {
                return if token.is_empty() {
                    Ok(None)
                } else {
                    Err(SourceError::BadHeader("stream ended inside the header".into()))
                };
            };
            self.inner.consume(1);
            if b.is_ascii_whitespace() {
                if token.is_empty() {
                    continue;
                }
                return Ok(Some(String::from_utf8_lossy(&token).into_owned()));
            }
            if b == b'#' && token.is_empty() {
                // A comment runs to the end of its line.
                let mut skip = Vec::new();
                self.inner.read_until(b'\n', &mut skip).await?;
                continue;
            }
            if token.len() >= 16 {
                return Err(SourceError::BadHeader(format!("token {:?}...", String::from_utf8_lossy(&token))));
            }
            token.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ppm(w: usize, h: usize, fill: u8) -> Vec<u8> {
        let mut v = format!("P6\n{w} {h}\n255\n").into_bytes();
        v.extend(std::iter::repeat_n(fill, w * h * 3));
        v
    }

    #[tokio::test]
    async fn reads_a_stream_of_ppm_frames_of_any_size() {
        let mut stream = ppm(4, 2, 7);
        stream.extend(b"P6 # a comment\n3 1 255\n");
        stream.extend([1u8, 2, 3, 4, 5, 6, 7, 8, 9]);
        // A pixel value that looks like whitespace right after the header stays a pixel.
        stream.extend(ppm(1, 1, b' '));
        let mut r = PpmReader::new(stream.as_slice());
        let a = r.next_frame().await.unwrap().unwrap();
        assert_eq!((a.width, a.height, a.rgb.len()), (4, 2, 24));
        assert!(a.rgb.iter().all(|&v| v == 7));
        let b = r.next_frame().await.unwrap().unwrap();
        assert_eq!((b.width, b.height, b.rgb), (3, 1, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]));
        let c = r.next_frame().await.unwrap().unwrap();
        assert_eq!(c.rgb, [b' '; 3]);
        assert!(r.next_frame().await.unwrap().is_none(), "clean end between frames");
    }

    #[tokio::test]
    async fn broken_streams_are_typed_errors() {
        let err = |bytes: Vec<u8>| async move {
            PpmReader::new(bytes.as_slice()).next_frame().await.unwrap_err().to_string()
        };
        assert!(err(b"P5\n1 1\n255\n\0".to_vec()).await.contains("magic \"P5\""));
        assert!(err(b"P6\n1 x\n255\n".to_vec()).await.contains("height \"x\""));
        assert!(err(b"P6\n1 1\n65535\n".to_vec()).await.contains("maxval 65535"));
        assert!(err(b"P6\n100000 100000\n255\n".to_vec()).await.contains("larger than"));
        assert!(err(b"P6\n2 2\n255\n\0\0\0".to_vec()).await.starts_with("reading from ffmpeg"), "truncated pixels");
        assert!(err(b"P6\n2".to_vec()).await.contains("ended"));
    }

    #[test]
    fn credentials_never_leave_ffmpeg_messages() {
        let source = "rtsp://admin:s3cr3t@10.0.0.5:554/stream1";
        let text = "Error opening input file rtsp://admin:s3cr3t@10.0.0.5:554/stream1. / auth s3cr3t failed";
        let shown = redact_in(text, source);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("rtsp://***@10.0.0.5:554/stream1"), "{shown}");
        assert_eq!(redact_in("no url here", "/videos/a.mp4"), "no url here");
    }

    #[test]
    fn credentials_never_leave_the_url() {
        assert_eq!(redact("rtsp://admin:s3cret@10.0.0.5:554/stream1"), "rtsp://***@10.0.0.5:554/stream1");
        assert_eq!(redact("http://user@cam/mjpg?x=a@b"), "http://***@cam/mjpg?x=a@b");
        assert_eq!(redact("rtsp://cam/live"), "rtsp://cam/live");
        assert_eq!(redact("/videos/a@b.mp4"), "/videos/a@b.mp4");
    }

    #[test]
    fn sources_are_recognized_and_get_their_input_options() {
        assert_eq!(SourceKind::of("RTSP://cam/x"), SourceKind::Rtsp);
        assert_eq!(SourceKind::of("https://cam/mjpg"), SourceKind::Http);
        assert_eq!(SourceKind::of("/dev/video0"), SourceKind::Device);
        assert_eq!(SourceKind::of("clip.mp4"), SourceKind::File);
        let args = FfmpegArgs { fps: Some(5.0), max_width: Some(1280), realtime: true, looped: true };
        let rtsp = args.command_line("rtsp://u:p@cam/x").join(" ");
        assert!(rtsp.contains("-rtsp_transport tcp -timeout 10000000 -i rtsp://u:p@cam/x"), "{rtsp}");
        assert!(rtsp.contains("-vf fps=5,scale='min(iw,1280)':-2"), "{rtsp}");
        assert!(rtsp.ends_with("-f image2pipe -c:v ppm -pix_fmt rgb24 -"), "{rtsp}");
        assert!(!rtsp.contains("-re"), "live sources are read as they come");
        let mjpeg = args.command_line("http://cam/video.mjpg").join(" ");
        assert!(mjpeg.contains("-timeout 10000000 -rw_timeout 10000000 -use_wallclock_as_timestamps 1"), "{mjpeg}");
        let hls = args.command_line("https://cam/live/index.m3u8").join(" ");
        assert!(!hls.contains("wallclock"), "HLS keeps its own timestamps: {hls}");
        let file = args.command_line("clip.mp4").join(" ");
        assert!(file.contains("-stream_loop -1 -re -i clip.mp4"), "{file}");
        let plain = FfmpegArgs { fps: None, max_width: None, realtime: false, looped: false }.command_line("a.mkv");
        assert!(!plain.iter().any(|a| a == "-vf"), "{plain:?}");
    }

    #[test]
    fn a_missing_ffmpeg_says_how_to_get_one() {
        let e = find_ffmpeg(Some(Path::new("/nonexistent/ffmpeg")), None).unwrap_err().to_string();
        assert!(
            e.contains("at /nonexistent/ffmpeg")
                && e.contains("cargo xtask tools")
                && e.contains("apt-get install ffmpeg"),
            "{e}"
        );
    }

    /// ffmpeg for the tests that run it: the one `cargo xtask test` installs (the tools venv
    /// beside `$EDGEPOOL_TEST_PYTHON`), else PATH. Missing is a failure, loudly: these tests
    /// are part of what CI runs.
    fn test_ffmpeg() -> PathBuf {
        let venv = std::env::var_os("EDGEPOOL_TEST_PYTHON")
            .map(PathBuf::from)
            .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_owned));
        find_ffmpeg(None, venv.as_deref())
            .unwrap_or_else(|e| panic!("{e}\n(run the tests with `cargo xtask test`, which installs it)"))
    }

    fn photo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/photos/grace_hopper.jpg")
    }

    #[tokio::test]
    async fn a_real_h264_file_comes_back_at_the_detect_rate_and_size() {
        let ffmpeg = test_ffmpeg();
        let dir = tempfile::tempdir().unwrap();
        let video = dir.path().join("clip.mp4");
        // Two seconds at 30 fps of a real photo, H.264 as cameras send it.
        let made = std::process::Command::new(&ffmpeg)
            .args(["-nostdin", "-loglevel", "error", "-loop", "1", "-framerate", "30", "-t", "2", "-i"])
            .arg(photo())
            .args(["-vf", "scale=320:240", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y"])
            .arg(&video)
            .status()
            .unwrap();
        assert!(made.success());
        let args = FfmpegArgs { fps: Some(5.0), max_width: Some(160), realtime: false, looped: false };
        let mut reader = FfmpegReader::spawn(&ffmpeg, video.to_str().unwrap(), &args).unwrap();
        let mut frames = Vec::new();
        while let Some(f) = reader.next_frame().await.unwrap() {
            frames.push(f);
        }
        let (status, stderr) = reader.finish("clip.mp4", true).await;
        assert_eq!(status, Some(0), "{stderr}");
        assert!((9..=11).contains(&frames.len()), "2 s at 5 fps: {} frames", frames.len());
        let f = &frames[0];
        assert_eq!((f.width, f.height, f.rgb.len()), (160, 120, 160 * 120 * 3), "scaled to --max-width");
        // The pixels are the photo's: its mean colour, within what H.264 and scaling change.
        let want =
            image::open(photo()).unwrap().resize_exact(160, 120, image::imageops::FilterType::Triangle).to_rgb8();
        let mean = |px: &[u8]| -> [f64; 3] {
            let mut m = [0.0; 3];
            for p in px.chunks_exact(3) {
                for c in 0..3 {
                    m[c] += f64::from(p[c]) / (px.len() / 3) as f64;
                }
            }
            m
        };
        let (got, want) = (mean(&f.rgb), mean(want.as_raw()));
        for c in 0..3 {
            assert!((got[c] - want[c]).abs() < 6.0, "channel {c}: {got:?} vs {want:?}");
        }
    }

    #[tokio::test]
    async fn a_source_that_fails_ends_the_frames_and_explains_without_credentials() {
        let ffmpeg = test_ffmpeg();
        let args = FfmpegArgs { fps: None, max_width: None, realtime: false, looped: false };
        let mut reader = FfmpegReader::spawn(&ffmpeg, "/nonexistent/clip.mp4", &args).unwrap();
        assert!(reader.next_frame().await.unwrap().is_none());
        let (status, stderr) = reader.finish("/nonexistent/clip.mp4", true).await;
        assert_ne!(status, Some(0));
        assert!(stderr.contains("No such file"), "{stderr}");
        // Nothing listens on port 9: refused at once; the password stays out of the message.
        let url = "rtsp://admin:s3cret@127.0.0.1:9/stream";
        let mut reader = FfmpegReader::spawn(&ffmpeg, url, &args).unwrap();
        assert!(reader.next_frame().await.unwrap().is_none());
        let (status, stderr) = reader.finish(url, true).await;
        assert_ne!(status, Some(0));
        assert!(!stderr.contains("s3cret"), "{stderr}");
        assert!(!stderr.is_empty());
    }
}
