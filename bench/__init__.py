"""aigate's benchmark harness: aigate, LiteLLM's proxy, a bare reference proxy and
direct-to-simulator, side by side on one machine. Run with ``make bench`` or
``python -m bench.run --help``; the method is described in ``bench/README.md``."""
