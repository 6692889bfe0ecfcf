"""gateway.yaml text as the repository ships it, a commented block switched on."""

from __future__ import annotations


def uncommented(text: str, key: str) -> str:
    """The text with the commented-out `key:` blocks (a `# key:` line and the `#   ...` lines
    under it) turned back into YAML, as a reader following the comments would."""
    lines, in_block = [], False
    for line in text.splitlines():
        indent, body = line[: len(line) - len(line.lstrip())], line.strip()
        in_block = body.startswith(f"# {key}:") or (in_block and body.startswith("#   "))
        lines.append(indent + body[2:] if in_block else line)
    return "\n".join(lines) + "\n"
