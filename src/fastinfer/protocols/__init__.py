"""Wire protocols offered beside fastinfer's own v1 API, as pure codecs (no HTTP, no I/O).

Each codec turns request bytes into the rows the data plane validates and predicts, and the
data plane's predictions back into response bytes, so the routes stay thin and every protocol
shares one validation and batching path.
"""
