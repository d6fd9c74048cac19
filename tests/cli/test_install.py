#!/usr/bin/env python3
"""The library installs like one (issue 20): `make install` honours PREFIX
and DESTDIR; metamori.pc builds and links a program that then runs from a
non-standard prefix without LD_LIBRARY_PATH (rpath); bash completion loads
and completes commands, options and tags; LICENSE and CHANGELOG are there
and the README names the license."""
import os
import subprocess

import mtmtest as T
from clilib import expect

BUILD = os.environ["METAMORI_BUILD_DIR"]
SRC = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))

PROG = r"""
#include <metamori.h>
#include <stdio.h>
int main(int argc, char **argv)
{
	mtm_store *s;
	int rc = mtm_init(&s, argv[1]);
	if (rc) { fprintf(stderr, "%s\n", mtm_last_error()); return 1; }
	mtm_checkpoint_info ci;
	rc = mtm_checkpoint(s, NULL, &ci);
	if (rc) { fprintf(stderr, "%s\n", mtm_last_error()); return 1; }
	printf("%s %lld\n", mtm_version(), (long long)ci.id);
	mtm_free(ci.message);
	mtm_close(s);
	return 0;
}
"""


def sh(args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise T.Failure("%s failed (%d): %s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def sanitized():
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        return "METAMORI_SANITIZE:BOOL=ON" in f.read()


def test_make_install_prefix_destdir():
    stage = T.tempdir("mtm-destdir-")
    if sanitized():  # `make install` builds the normal build; here the same step it runs
        sh(["cmake", "--install", BUILD, "--prefix", "/opt/mtm"], env=dict(os.environ, DESTDIR=stage))
    else:
        sh(["make", "-C", SRC, "install", "BUILD=" + BUILD, "PREFIX=/opt/mtm", "DESTDIR=" + stage])
    root = os.path.join(stage, "opt", "mtm")
    for rel in ("bin/metamori", "include/metamori.h", "lib/metamori/libmetamori-preload.so",
                "lib/pkgconfig/metamori.pc", "share/man/man1/metamori.1",
                "share/bash-completion/completions/metamori", "share/doc/metamori/LICENSE",
                "share/doc/metamori/CHANGELOG.md"):
        expect(os.path.exists(os.path.join(root, rel)), "no %s under DESTDIR/PREFIX" % rel)
    expect(any(f.startswith("libmetamori.so") for f in os.listdir(os.path.join(root, "lib"))), "no libmetamori.so")
    with open(os.path.join(root, "lib", "pkgconfig", "metamori.pc")) as f:
        pc = f.read()
    expect("prefix=/opt/mtm\n" in pc and stage not in pc, "the .pc names the staging dir: %s" % pc)
    expect("-Wl,-rpath,${libdir}" in pc, "no rpath for /opt/mtm: %s" % pc)
    # a standard prefix needs no rpath
    std = T.tempdir("mtm-destdir-usr-")
    sh(["cmake", "--install", BUILD, "--prefix", "/usr"], env=dict(os.environ, DESTDIR=std))
    pcs = [os.path.join(d, f) for d, _, fs in os.walk(std) for f in fs if f == "metamori.pc"]
    expect(len(pcs) == 1, "metamori.pc under /usr: %r" % pcs)
    with open(pcs[0]) as f:
        pc = f.read()
    expect("prefix=/usr\n" in pc and "rpath" not in pc, pc)


def test_pkg_config_builds_and_runs():
    prefix = T.tempdir("mtm-prefix-")
    sh(["cmake", "--install", BUILD, "--prefix", prefix])
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
    env.pop("LD_LIBRARY_PATH", None)
    flags = sh(["pkg-config", "--cflags", "--libs", "metamori"], env=env).stdout.split()
    expect("-I%s/include" % prefix in flags and "-lmetamori" in flags, flags)
    work = T.tempdir("mtm-pc-prog-")
    src = os.path.join(work, "prog.c")
    with open(src, "w") as f:
        f.write(PROG)
    exe = os.path.join(work, "prog")
    sh(["cc", "-o", exe, src] + flags, env=env)
    tree = T.tempdir("mtm-pc-tree-")
    with open(os.path.join(tree, "f"), "w") as f:
        f.write("x")
    out = sh([exe, tree], env=env).stdout
    expect(out.endswith(" 1\n"), "the program's output: %r" % out)
    ldd = sh(["ldd", exe], env=env).stdout
    expect(os.path.join(prefix, "lib", "libmetamori.so") in ldd, "not the installed library: %s" % ldd)
    # static linking too, with the private requirements
    flags = sh(["pkg-config", "--cflags", "--libs", "--static", "metamori"], env=env).stdout.split()
    sh(["cc", "-o", exe + "-static", src, "-L%s/lib" % prefix, "-Wl,-Bstatic", "-lmetamori", "-Wl,-Bdynamic"]
       + [f for f in flags if f != "-lmetamori"] + (["-fsanitize=address,undefined"] if sanitized() else []), env=env)


def test_bash_completion():
    comp = os.path.join(SRC, "packaging", "metamori.bash")
    sh(["bash", "-n", comp])
    root = T.tempdir("mtm-comp-")
    T.init(root)
    T.write_file(os.path.join(root, "f"), b"x")
    T.checkpoint(root)
    T.run(["-C", root, "tag", "1", "baseline"])
    bindir = os.path.dirname(os.path.abspath(T.METAMORI))

    def complete(line):
        words = line.split(" ")
        script = ('source %s; COMP_WORDS=(%s); COMP_CWORD=%d; COMP_LINE=%r; COMP_POINT=%d; _metamori; '
                  'printf "%%s\\n" "${COMPREPLY[@]}"' % (comp, " ".join("'%s'" % w for w in words), len(words) - 1,
                                                         line, len(line)))
        env = dict(os.environ, PATH=bindir + ":" + os.environ["PATH"])
        return set(sh(["bash", "-c", script], env=env, cwd=root).stdout.split())

    expect({"checkpoint", "status", "log", "restore", "mount"} <= complete("metamori "), complete("metamori "))
    expect(complete("metamori st") == {"status"}, complete("metamori st"))
    expect({"--json", "--exit-code", "-z"} <= complete("metamori status -"), complete("metamori status -"))
    expect(complete("metamori restore b") == {"baseline"}, complete("metamori restore b"))
    expect("-n" in complete("metamori log -"), "log -n")


def test_license_and_changelog():
    with open(os.path.join(SRC, "LICENSE")) as f:
        lic = f.read()
    expect(lic.startswith("MIT License"), "LICENSE")
    with open(os.path.join(SRC, "README.md")) as f:
        readme = f.read()
    expect("MIT" in readme and "LICENSE" in readme, "the README does not state the license")
    with open(os.path.join(SRC, "CHANGELOG.md")) as f:
        expect(f.read().startswith("# Changelog"), "CHANGELOG.md")


if __name__ == "__main__":
    T.main([test_make_install_prefix_destdir, test_pkg_config_builds_and_runs, test_bash_completion,
            test_license_and_changelog])
