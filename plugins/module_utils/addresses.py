"""Listen addresses, written once: which mean every address of a host, which only the host itself, and where
the host reaches a listener of its own (a wildcard listens on loopback too)."""

# what Ollama's OLLAMA_HOST and nginx's listen take as "every address" (empty: Ollama's default host part)
WILDCARDS = ("", "*", "0.0.0.0", "::", "[::]")
LOOPBACKS = ("127.0.0.1", "::1", "[::1]", "localhost")


def is_wildcard(address):
    return address in WILDCARDS


def is_loopback(address):
    """Whether only the host itself reaches ADDRESS."""
    return address in LOOPBACKS


def local_address(address):
    """Where the host itself reaches a listener on ADDRESS, bracketed where IPv6 (for a URL or host:port):
    0.0.0.0 by 127.0.0.1, :: by [::1], any other address as it is."""
    if is_wildcard(address):
        return "[::1]" if address in ("::", "[::]") else "127.0.0.1"
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def local_url(address, port, scheme="http"):
    """The URL the host itself uses for a listener on ADDRESS:PORT."""
    return f"{scheme}://{local_address(address)}:{port}"
