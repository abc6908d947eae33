#!/usr/bin/env python3
"""A real RTSP camera for tests: serves an H.264 MP4 file, looped forever, as a live stream.

Usage: python3 tools/camera/rtsp_server.py --file VIDEO.mp4 --port PORT [--path /stream]
                                           [--user U --password P]
       python3 tools/camera/rtsp_server.py --check

Prints exactly one line, `ready rtsp://127.0.0.1:PORT/stream`, on stdout once it listens (never
the credentials; with --port 0 it names the port it got), and exits 0 on SIGTERM or SIGINT.
`--check` only checks that everything it needs is installed, prints GStreamer's version and
exits. It needs Debian's python3-gi, which only Debian's /usr/bin/python3 sees (not pyenv's
python3, nor a venv made without --system-site-packages): started by another python3 that lacks
gi, it re-executes itself (same pid) under /usr/bin/python3. Install the packages with
`bash .ci/camera-tools.sh`. Faults for reconnect tests: SIGSTOP the process (clients stall until
ffmpeg's -timeout), SIGKILL or SIGTERM it (clients see EOF at once), start it again on the same
port (it binds with SO_REUSEADDR).

How it behaves like a camera rather than a file server: one "feeder" pipeline reads the file at
its real rate for the life of the process (filesrc ! qtdemux ! appsink sync=true), looping with
segment seeks, and hands each H.264 access unit, unchanged, to every RTSP media's `appsrc
is-live=true`. So there is no re-encoding; the stream is live (a client joins mid-stream, its
PLAY Range is ignored, and it gets frames at the file's frame rate however fast it reads); one
media is shared by all clients; and a client that disconnects and comes back gets the same live
stream. Timestamps are taken from the clock when a frame is handed over, keeping the file's
PTS-DTS offset, so B-frames and the jump back at each loop stay valid for the client. A new media
starts on a keyframe; a client that joins a media already streaming starts mid-GOP, like on a real
camera (with B-frames in the file, ffmpeg then warns "co located POCs unavailable" once or twice;
make the file with `-bf 0` for a quiet stderr).

Exit codes: 0 stopped by a signal; 1 the file stopped playing; 2 bad arguments or an unusable
file; 3 python3-gi or a GStreamer part missing (one line on stderr names the Debian packages);
4 the port cannot be bound.
"""

import argparse
import os
import signal
import sys
import threading

SYSTEM_PYTHON = "/usr/bin/python3"

DEBIAN_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
)
# Elements the two pipelines need, with the package that ships each.
ELEMENTS = {
    "filesrc": "libgstreamer1.0-0",
    "appsrc": "gstreamer1.0-plugins-base",
    "appsink": "gstreamer1.0-plugins-base",
    "qtdemux": "gstreamer1.0-plugins-good",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "h264parse": "gstreamer1.0-plugins-bad",
}


def missing(what):
    print(
        f"rtsp_server.py: {what}; install Debian's {DEBIAN_PACKAGES} "
        "(bash .ci/camera-tools.sh) and run it with /usr/bin/python3",
        file=sys.stderr,
        flush=True,
    )
    sys.exit(3)


try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer
except (ImportError, ValueError) as err:
    here = os.path.realpath(sys.executable or "")
    if here != os.path.realpath(SYSTEM_PYTHON) and os.access(SYSTEM_PYTHON, os.X_OK):
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, os.path.abspath(__file__), *sys.argv[1:]])
    missing(f"cannot load GStreamer's RTSP server from Python ({err})")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="check the install, print versions, exit")
    p.add_argument("--file", help="an MP4 file with an H.264 video track")
    p.add_argument("--port", type=int, help="TCP port on 127.0.0.1 (0: any free one)")
    p.add_argument("--path", default="/stream", help="mount point (default /stream)")
    p.add_argument("--user", help="require HTTP basic auth with this user")
    p.add_argument("--password", help="the user's password")
    args = p.parse_args()
    if args.check:
        return args
    if args.file is None or args.port is None:
        p.error("--file and --port are required")
    if (args.user is None) != (args.password is None):
        p.error("--user and --password go together")
    if not args.path.startswith("/"):
        p.error("--path must start with /")
    if not 0 <= args.port < 65536:
        p.error("--port must be 0..65535")
    return args


def fail(code, msg):
    print(f"rtsp_server.py: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


class Feeder:
    """Reads the file at its real rate, forever, and pushes each access unit to every live media."""

    def __init__(self, path):
        self.appsrcs = {}  # appsrc -> True once it has been given a keyframe
        self.lock = threading.Lock()  # appsrcs: medias come and go on the server's threads
        self.caps = None
        pipeline = Gst.Pipeline.new("feeder")
        src = Gst.ElementFactory.make("filesrc")
        src.set_property("location", path)
        demux = Gst.ElementFactory.make("qtdemux")
        # h264parse leaves the stream as qtdemux gives it (avc, one access unit a buffer, the
        # parameter sets in codec_data) but fills in what a badly muxed file may lack.
        parse = Gst.ElementFactory.make("h264parse")
        sink = Gst.ElementFactory.make("appsink")
        sink.set_property(
            "caps", Gst.Caps.from_string("video/x-h264,stream-format=avc,alignment=au")
        )
        sink.set_property("sync", True)  # the clock paces the file: this is what makes it live
        sink.set_property("emit-signals", True)
        sink.set_property("max-buffers", 2)
        sink.connect("new-preroll", self.on_preroll)
        sink.connect("new-sample", self.on_sample)
        for el in (src, demux, parse, sink):
            pipeline.add(el)
        src.link(demux)
        parse.link(sink)

        def on_pad(_demux, pad):
            target = parse.get_static_pad("sink")
            if pad.get_name().startswith("video_") and not target.is_linked():
                pad.link(target)  # the first video track; audio and others stay unlinked

        demux.connect("pad-added", on_pad)
        self.pipeline = pipeline
        self.failed = False
        self.clock = Gst.SystemClock.obtain()
        pipeline.use_clock(self.clock)

    def start(self):
        """Prerolls (so the caps are known before any client asks), then plays."""
        bus = self.pipeline.get_bus()
        if self.pipeline.set_state(Gst.State.PAUSED) == Gst.StateChangeReturn.FAILURE:
            self.fail_from_bus(bus)
        ret, _, _ = self.pipeline.get_state(10 * Gst.SECOND)
        if ret != Gst.StateChangeReturn.SUCCESS or self.caps is None:
            self.fail_from_bus(bus)
        # A segment seek: at the end the pipeline posts SEGMENT_DONE instead of going EOS, and a
        # non-flushing seek back to 0 then continues with running time still counting up.
        self.seek(Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT)
        bus.add_signal_watch()
        bus.connect("message", self.on_message)
        self.pipeline.set_state(Gst.State.PLAYING)

    def seek(self, flags):
        self.pipeline.seek(
            1.0, Gst.Format.TIME, flags, Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1
        )

    def fail_from_bus(self, bus):
        msg = bus.timed_pop_filtered(0, Gst.MessageType.ERROR)
        detail = msg.parse_error()[0].message if msg else "no video track"
        fail(2, f"cannot play the file (an MP4 with an H.264 video track?): {detail}")

    def on_message(self, _bus, msg):
        if msg.type == Gst.MessageType.SEGMENT_DONE:
            self.seek(Gst.SeekFlags.SEGMENT)
        elif msg.type == Gst.MessageType.EOS:  # a demuxer that ignored the segment flag
            self.seek(Gst.SeekFlags.FLUSH | Gst.SeekFlags.SEGMENT)
        elif msg.type == Gst.MessageType.ERROR:
            err, _ = msg.parse_error()
            print(f"rtsp_server.py: feeder error: {err.message}", file=sys.stderr, flush=True)
            self.failed = True
            loop.quit()

    def on_preroll(self, sink):
        self.caps = sink.emit("pull-preroll").get_caps()
        return Gst.FlowReturn.OK

    def on_sample(self, sink):
        sample = sink.emit("pull-sample")
        buf = sample.get_buffer()
        now = self.clock.get_time()
        offset = 0  # PTS - DTS of this access unit in the file (> 0 around B-frames)
        if buf.pts != Gst.CLOCK_TIME_NONE and buf.dts != Gst.CLOCK_TIME_NONE:
            offset = buf.pts - buf.dts
        keyframe = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        with self.lock:
            targets = []
            for appsrc, started in self.appsrcs.items():
                base = appsrc.get_base_time()
                if base == 0 or now < base:
                    continue  # never set to PLAYING yet: no running time to stamp a frame with
                if not started and not keyframe:
                    continue  # a new media starts on a keyframe, so its first frame decodes
                self.appsrcs[appsrc] = True
                targets.append((appsrc, base))
        for appsrc, base in targets:
            out = buf.copy()
            out.dts = now - base
            out.pts = out.dts + offset
            out.duration = buf.duration
            appsrc.emit("push-buffer", out)
        return Gst.FlowReturn.OK


class Factory(GstRtspServer.RTSPMediaFactory):
    """One media for every client; each media is an appsrc fed by the feeder."""

    def __init__(self, feeder):
        super().__init__()
        self.feeder = feeder
        self.set_shared(True)
        self.connect("media-configure", self.on_media_configure)

    def do_create_element(self, _url):
        return Gst.parse_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=false "
            "max-buffers=30 leaky-type=downstream "
            "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )

    def on_media_configure(self, _factory, media):
        appsrc = media.get_element().get_by_name("src")
        appsrc.set_property("caps", self.feeder.caps)
        feeder = self.feeder

        def forget(_media):
            with feeder.lock:
                feeder.appsrcs.pop(appsrc, None)

        with feeder.lock:
            feeder.appsrcs[appsrc] = False
        media.connect("unprepared", forget)


def main():
    global loop
    args = parse_args()
    Gst.init(None)
    absent = [f"{el} ({pkg})" for el, pkg in ELEMENTS.items() if not Gst.ElementFactory.find(el)]
    if absent:
        missing("GStreamer elements missing: " + ", ".join(absent))
    if args.check:
        print(f"{Gst.version_string()}, python {sys.version.split()[0]} at {sys.executable}")
        return 0
    try:
        with open(args.file, "rb"):
            pass
    except OSError as err:
        fail(2, f"cannot read --file: {err}")

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    feeder = Feeder(args.file)
    feeder.start()

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = Factory(feeder)
    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", args.user)
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role(args.user, "media.factory.access", True)
        perms.add_permission_for_role(args.user, "media.factory.construct", True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(args.path, factory)
    try:
        # Binds and listens right away (with SO_REUSEADDR, so a restart on the same port works
        # while the old connections sit in TIME_WAIT); raises when the port is taken.
        source = server.create_source(None)
    except GLib.Error as err:
        fail(4, f"cannot listen on 127.0.0.1:{args.port}: {err.message}")
    source.attach(None)

    print(f"ready rtsp://127.0.0.1:{server.get_bound_port()}{args.path}", flush=True)
    loop.run()
    feeder.pipeline.set_state(Gst.State.NULL)
    return 1 if feeder.failed else 0


loop = None

if __name__ == "__main__":
    sys.exit(main())
