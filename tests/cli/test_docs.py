#!/usr/bin/env python3
"""The documentation follows the program (issue 20): every usage text the
README quotes ("### CMD" then a block starting "usage: metamori CMD") is
exactly what `metamori CMD --help` prints, every command `metamori help`
lists is in the man page's synopsis, and bash completion offers every
command and exactly the options each command's --help lists."""
import os
import re
import subprocess

import mtmtest as T
from clilib import expect

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def readme_usages(text):
    return re.findall(r"### (\w+)\n\n```\n(usage: metamori \1.*?)```", text, flags=re.S)


def test_readme_usage_is_help():
    with open(os.path.join(SRC, "README.md")) as f:
        usages = readme_usages(f.read())
    expect(len(usages) >= 10, "README quotes %d usage texts" % len(usages))
    for cmd, text in usages:
        p = subprocess.run([T.METAMORI, cmd, "--help"], capture_output=True, text=True)
        expect(p.returncode == 0 and p.stdout == text,
               "README's usage of %s differs from 'metamori %s --help':\n%s\n---\n%s" % (cmd, cmd, text, p.stdout))


def test_man_page_has_every_command():
    p = subprocess.run([T.METAMORI, "help"], capture_output=True, text=True)
    cmds = re.findall(r"^  (\w+) ", p.stdout, flags=re.M)
    expect(len(cmds) >= 10, "metamori help lists %r" % cmds)
    with open(os.path.join(SRC, "man", "metamori.1")) as f:
        man = f.read()
    missing = [c for c in cmds if not re.search(r"^\.B metamori %s\b" % c, man, flags=re.M)]
    expect(not missing, "commands missing from the man page's SYNOPSIS: %r" % missing)


def help_options(cmd):
    """The options in the table of `metamori CMD --help` (lines starting
    with two spaces and a dash: "  -q, --quiet   ...")."""
    p = subprocess.run([T.METAMORI, cmd, "--help"], capture_output=True, text=True)
    out = set()
    for line in p.stdout.splitlines():
        m = re.match(r"^  +((?:--?[\w-]+(?:, |/| )?)+)", line)
        if m:
            out.update(o for o in re.findall(r"--?[\w-]+", m.group(1)) if o != "--")
    return out


def test_bash_completion_offers_the_options():
    with open(os.path.join(SRC, "packaging", "metamori.bash")) as f:
        text = f.read()
    cases = dict(re.findall(r"^\t([\w |]+)\) opts=\"([^\"]*)\"", text, flags=re.M))
    p = subprocess.run([T.METAMORI, "help"], capture_output=True, text=True)
    cmds = re.findall(r"^  (\w+) ", p.stdout, flags=re.M)
    listed = re.search(r'local commands="([^"]*)"', text).group(1).split()
    expect(sorted(listed) == sorted(cmds + ["help"]), "completion's commands %r, metamori help's %r" % (listed, cmds))
    for cmd in cmds:
        if cmd in ("init", "help"):
            continue
        opts = next((set(v.split()) for k, v in cases.items() if cmd in [c.strip() for c in k.split("|")]), None)
        want = help_options(cmd)
        expect(opts == want, "completion of %s: %r, its --help lists %r" % (cmd, sorted(opts or ()), sorted(want)))


if __name__ == "__main__":
    T.main([test_readme_usage_is_help, test_man_page_has_every_command, test_bash_completion_offers_the_options])
