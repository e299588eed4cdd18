"""The ``mtl-keras`` command line.

Imports no TensorFlow at module level: ``mtl_keras/__init__`` calls
``quiet_tensorflow`` from here before TensorFlow loads. TensorFlow's C++
start-up lines (oneDNN, CUDA stubs, CPU features, ``failed call to cuInit`` on a
machine without a GPU) are written before its logging is set up, so
``TF_CPP_MIN_LOG_LEVEL`` alone does not hide them: ``quiet_tensorflow`` points
file descriptor 2 at a pipe whose reader thread drops those lines and passes
every other line on, so real errors still show.
"""

import argparse
import os
import re
import sys
import threading

_NOISE = re.compile(
    rb"All log messages before absl::InitializeLog|oneDNN custom operations|cudart_stub|cpu_feature_guard"
    rb"|To enable the following instructions|cuInit|cuda_platform|cuda_executor|cuda_dnn|cuda_fft|cuda_blas"
    rb"|Unable to register cu(DNN|FFT|BLAS)|computation_placer|TF-TRT Warning"
)


_forwarder = None  # the thread passing stderr on, once quiet_tensorflow has started it


def exit_at_once(status):
    """Ends the process without the interpreter's finalization, the last lines of stderr passed on first."""
    sys.stdout.flush()
    sys.stderr.flush()
    if _forwarder is not None:
        os.close(2)  # the pipe's only writer: the forwarder reads to its end, then returns
        _forwarder.join(5)
    os._exit(status)


def quiet_tensorflow():
    """Filters TensorFlow's start-up noise out of this process's stderr; quiets absl. Call it
    before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real stderr: nothing to filter
        return
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    sys.stderr = open(real, "w", buffering=1, errors="backslashreplace", closefd=False)

    def forward():
        with os.fdopen(read, "rb") as lines:
            for line in lines:
                if not _NOISE.search(line):
                    os.write(real, line)

    global _forwarder
    _forwarder = threading.Thread(target=forward, name="mtl-keras-stderr", daemon=True)
    _forwarder.start()
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass



def demo(args):
    """Trains a multi-task PLE on ctr + cvr of a synthetic recommender log next to single-task baselines
    (cvr alone, ctr alone), says which wins each task and by how much, plots expert usage and task
    weights, exports it, serves it in the background and checks that gRPC and REST predictions equal
    the in-process ones (mtl_keras/demo/)."""
    from mtl_keras import demo as demo_module

    return demo_module.run(args)


def serve(args):
    """Serves a model folder with TF Serving's gRPC API until SIGTERM (in-flight requests finish)."""
    import tensorflow as tf

    from mtl_keras.serving.batching import parse_batching_parameters
    from mtl_keras.serving.servables import ModelVersions, from_model_config
    from mtl_keras.serving.server import Server, StartError

    # Before the first TensorFlow op: thread pools are fixed once the runtime starts.
    tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)
    batching = None
    if args.enable_batching:
        text = open(args.batching_parameters_file).read() if args.batching_parameters_file else ""
        batching = parse_batching_parameters(text)
    if args.model_config_file:
        with open(args.model_config_file) as handle:
            config_text = handle.read()
        try:
            served = from_model_config(config_text, args.prefer_tflite_model)
        except ValueError as error:  # TF Serving's words, then a failed start
            raise SystemExit(f"mtl-keras serve: {error}") from None
    elif args.model_name and args.model_base_path:
        served = [ModelVersions(args.model_name, args.model_base_path, prefer_tflite=args.prefer_tflite_model)]
    else:
        raise SystemExit("mtl-keras serve: give --model_config_file, or --model_name and --model_base_path")
    monitoring_path = None
    if args.monitoring_config_file:
        from mtl_keras.serving.monitoring import parse_monitoring_config

        try:
            enabled, path = parse_monitoring_config(open(args.monitoring_config_file).read())
        except ValueError as error:
            raise SystemExit(f"mtl-keras serve: {error}") from None
        monitoring_path = path if enabled else None
    server = Server(
        served, args.port, rest_port=args.rest_api_port,
        poll_seconds=args.file_system_poll_wait_seconds, batching=batching,
        max_workers=args.grpc_max_threads, channel_arguments=_channel_arguments(args.grpc_channel_arguments),
        socket_path=args.grpc_socket_path or None, monitoring_path=monitoring_path,
        rest_timeout_ms=args.rest_api_timeout_in_ms, prefer_tflite=args.prefer_tflite_model,
    )
    try:
        server.start()
    except StartError as error:  # tensorflow_model_server's main.cc: this line on stdout, exit status 255
        print(f"Failed to start server. Error: UNKNOWN: {error}", flush=True)
        exit_at_once(255)  # a gRPC server exists from here on: no finalization to hang in (below)
    if args.model_config_file and args.model_config_file_poll_wait_seconds > 0:
        server.watch_config_file(args.model_config_file, args.model_config_file_poll_wait_seconds, config_text)
    rest = f", REST on {server.rest.port}" if server.rest else ""
    names = ", ".join(m.name for m in served)
    threads = (tf.config.threading.get_intra_op_parallelism_threads(),
               tf.config.threading.get_inter_op_parallelism_threads())
    line = (f"serving {names}: gRPC on {server.port}{rest}; TensorFlow threads intra {threads[0]}, "
            f"inter {threads[1]} (0: one per core)")
    # Stopped, the calls in flight finished, exit status 0 (or 1 past the deadline, with every
    # thread's stack). Then no interpreter finalization: gRPC's asyncio shutdown there can
    # deadlock (grpc/grpc#22365, #40989), and one CI run's server, batching on, was still
    # running 20 s after its SIGTERM.
    server.serve_until_signal(grace=5.0, deadline_seconds=15.0, ready=lambda: print(line, flush=True))
    exit_at_once(0)


def _channel_arguments(text):
    """TF Serving's --grpc_channel_arguments: "name=value,..." with integer values as integers."""
    arguments = []
    for item in filter(None, (text or "").split(",")):
        name, _, value = item.partition("=")
        arguments.append((name.strip(), int(value) if value.strip().lstrip("-").isdigit() else value.strip()))
    return arguments


def _flag(value):
    """A boolean flag written as TF Serving's are: --flag, --flag=true, --flag=false."""
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _serve_parser(commands):
    """``serve``'s flags: TF Serving's names and defaults, each with its help and default shown."""
    parser = commands.add_parser("serve", help=serve.__doc__, description=serve.__doc__,
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    flag = parser.add_argument
    flag("--model_name", default=None, help="the model's name in requests (with --model_base_path)")
    flag("--model_base_path", default=None,
         help="the model's folder, holding one numbered folder per version (e.g. base/1/saved_model.pb)")
    flag("--model_config_file", default=None,
         help="a ModelServerConfig text proto naming several models (instead of the two flags above)")
    flag("--model_config_file_poll_wait_seconds", type=float, default=0,
         help="re-read --model_config_file this often (0: read once)")
    flag("--port", type=int, default=8500, help="gRPC port (0: a free one, printed at start)")
    flag("--rest_api_port", type=int, default=None, help="HTTP/REST port (unset: no REST API)")
    flag("--grpc_max_threads", type=int, default=16,
         help="threads running calls (with batching: model calls and other blocking work)")
    flag("--enable_batching", type=_flag, nargs="?", const=True, default=False,
         help="batch concurrent Predict calls into one model call")
    flag("--batching_parameters_file", default=None,
         help="a BatchingParameters text proto (unset: TF Serving's defaults)")
    flag("--file_system_poll_wait_seconds", type=float, default=1.0,
         help="look for new versions under the base paths this often")
    flag("--tensorflow_intra_op_parallelism", type=int, default=0,
         help="threads for one op (0: TensorFlow picks, one per core)")
    flag("--tensorflow_inter_op_parallelism", type=int, default=0, help="ops run at once (0: TensorFlow picks)")
    flag("--rest_api_timeout_in_ms", type=int, default=30000,
         help="drop a REST client that stalls mid-request after this long")
    flag("--grpc_socket_path", default="", help="also serve gRPC on this Unix socket (empty: none)")
    flag("--grpc_channel_arguments", default="", help="gRPC server options, name=value,... (integers as integers)")
    flag("--monitoring_config_file", default=None,
         help="a MonitoringConfig text proto: Prometheus metrics on the REST port")
    flag("--prefer_tflite_model", type=_flag, nargs="?", const=True, default=False,
         help="serve a version's model.tflite, where it has one, with tf.lite")
    flag("--enable_model_warmup", type=_flag, nargs="?", const=True, default=True,
         help="accepted for TF Serving compatibility; warm-up records are always replayed")
    parser.set_defaults(run=serve)
    return parser


def build_parser():
    """The ``mtl-keras`` argument parser (no TensorFlow import: ``demo`` and ``serve`` import it when they run)."""
    from mtl_keras import __version__
    from mtl_keras.demo import add_arguments

    parser = argparse.ArgumentParser(prog="mtl-keras", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"mtl-keras {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help=demo.__doc__, description=demo.__doc__,
                                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo)
    _serve_parser(commands)
    return parser


def main(argv=None):
    """The ``mtl-keras`` command; ``--help`` and ``--version`` answer in a fraction of a second."""
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
