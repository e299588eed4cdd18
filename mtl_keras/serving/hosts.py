"""The two gRPC servers that host the services (``services`` says when each is used)."""

import asyncio
import threading

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc


def _add_services(server, prediction, model):
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(model, server)
    return server


class ThreadedGrpc:
    """A gRPC server running each call on a thread of ``executor``."""

    def __init__(self, prediction, model, port, options, executor):
        self.server = _add_services(grpc.server(executor, options=options), prediction, model)
        self.port = self.server.add_insecure_port(f"[::]:{port}")

    def start(self):
        self.server.start()

    def stop(self, grace):
        self.server.stop(grace).wait()


class AsyncioGrpc:
    """A gRPC asyncio server on an event loop of its own, run by a daemon thread once started."""

    def __init__(self, prediction, model, port, options):
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(self._create(prediction, model, options))
        self.port = self.server.add_insecure_port(f"[::]:{port}")
        self._thread = None

    @staticmethod
    async def _create(prediction, model, options):  # an asyncio server binds to the loop it is created on
        return _add_services(grpc.aio.server(options=options), prediction, model)

    def start(self):
        self.loop.run_until_complete(self.server.start())
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def stop(self, grace):
        """Refuses new calls, lets those in flight finish for up to ``grace`` seconds, then closes the loop."""
        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self._thread = None
        if not self.loop.is_closed():
            self.loop.close()
