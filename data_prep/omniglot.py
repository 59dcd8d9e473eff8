"""Build omniglot_resized/<alphabet>/<character>/*.png (28x28) from the two Omniglot zips.

    python -m data_prep.omniglot --source_dir=DIR --output_dir=DATA [--download] [--resample=lanczos]

Both archives are merged (1623 characters x 20 drawings). The original code resized the
1-bit PNGs with `resize((28, 28), LANCZOS)`, but Pillow ignores the filter for mode '1' and
uses nearest neighbour, so the faithful output (the default, `nearest`) is binary.
`lanczos` converts to greyscale first and really filters (not what the paper used).
Archives are read directly from the zips; nothing is extracted next to them. Every archive is
checked against the known checksums (the official zips, and the byte-exact repacks kept in
../shared/data/omniglot); a download that matches neither is fetched once more, then refused.
The prepared folder gets a SHA256SUMS manifest; a second run checks every file against it.
"""
import hashlib
import io
import logging
import shutil
import urllib.error
import urllib.request
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path

from PIL import Image

from data_prep._common import (PrepError, atomic_directory, check_images, prepared_files, read_prep_info, run_main,
                               user_path, verify_content, write_manifest, write_prep_info)
from report.console import ProgressLine

ARCHIVES = {  # archive -> (alphabets, characters) it must hold
    "images_background.zip": (30, 964),
    "images_evaluation.zip": (20, 659),
}
NUM_CHARACTERS = 1623
IMAGES_PER_CHARACTER = 20
IMAGE_SIZE = 28
SOURCE_SIZE = (105, 105)  # every drawing in the archives
OUTPUT_NAME = "omniglot_resized"
RESAMPLE_MODES = ("nearest", "lanczos")
DOWNLOAD_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
# The archives as github.com/brendenlake/omniglot serves them (size, md5: its only published
# checksums, see ../shared/data/omniglot/SOURCE.md) ...
OFFICIAL_ARCHIVES = {
    "images_background.zip": (9_464_212, "68d2efa1b9178cc56df9314c21c6e718"),
    "images_evaluation.zip": (6_462_886, "6b91aef0f799c5bb55b94e3f2daec811"),
}
# ... and the deterministic repacks of the same PNGs in ../shared/data/omniglot (its SHA256SUMS).
REPACKED_SHA256 = {
    "images_background.zip": "236b154d0e6334f364479a5329afea6dab9ff215c148a78d72363ce8c76d5426",
    "images_evaluation.zip": "8620260a0350fc57296716a3f1e394d2b4024b02f9ba3e1b8bb03e65e7594c6d",
}

log = logging.getLogger(__name__)


def archive_checksums(path):
    """(size, md5, sha256) of a file, read once."""
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha256.update(block)
    return Path(path).stat().st_size, md5.hexdigest(), sha256.hexdigest()


def is_known_archive(name, checksums):
    """True if (size, md5, sha256) is the official archive `name` or its known repack."""
    size, md5, sha256 = checksums
    return (size, md5) == OFFICIAL_ARCHIVES[name] or sha256 == REPACKED_SHA256[name]


def _describe(name, checksums):
    size, md5, _ = checksums
    want_size, want_md5 = OFFICIAL_ARCHIVES[name]
    return f"{size} bytes with md5 {md5}, expected {want_size} bytes with md5 {want_md5}"


def download_archives(source_dir, base_url=DOWNLOAD_URL, timeout=60.0, attempts=2):
    """Fetch whichever of the two archives is missing from `source_dir`; a download that is not
    the known archive is fetched again (`attempts` in all), then refused with nothing kept."""
    source_dir = user_path(source_dir)
    source_dir.mkdir(parents=True, exist_ok=True)
    for name in ARCHIVES:
        target = source_dir / name
        if target.exists():
            continue
        url = base_url + name
        part = target.with_name(name + ".part")
        for attempt in range(1, attempts + 1):
            log.info("downloading %s", url)
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
                    shutil.copyfileobj(response, out)
                checksums = archive_checksums(part)
                if is_known_archive(name, checksums):
                    part.rename(target)
                    break
                log.warning("%s is not the known %s (%s)", url, name, _describe(name, checksums))
                if attempt == attempts:
                    raise PrepError(f"{url} gave {_describe(name, checksums)} on {attempts} tries; nothing was "
                                    f"kept (check --download_url, or download {name} by hand into "
                                    f"--source_dir={source_dir})")
            except (urllib.error.URLError, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                raise PrepError(f"could not download {url}: {reason} (download it by hand into "
                                f"--source_dir={source_dir})") from e
            finally:
                part.unlink(missing_ok=True)


def list_characters(archive):
    """Map (alphabet, character) -> sorted PNG member names, checking the archive's layout."""
    archive = user_path(archive)
    top = archive.name[: -len(".zip")]
    want_alphabets, want_characters = ARCHIVES[archive.name]
    if not archive.is_file():
        raise PrepError(f"archive not found: {archive} (put {' and '.join(ARCHIVES)} in "
                        f"--source_dir, or pass --download)")
    try:
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise PrepError(f"{archive} is not a readable zip archive (truncated or corrupt?): {e}; "
                        f"delete it and rerun (--download fetches it again)") from e
    characters = defaultdict(list)
    for name in names:
        parts = name.split("/")
        if len(parts) == 4 and parts[0] == top and name.endswith(".png") and not parts[3].startswith("."):
            characters[(parts[1], parts[2])].append(name)
    alphabets = {a for a, _ in characters}
    if len(alphabets) != want_alphabets or len(characters) != want_characters:
        raise PrepError(f"{archive} is not Omniglot's {archive.name}: expected {want_alphabets} alphabets "
                        f"and {want_characters} characters under {top}/<alphabet>/<character>/*.png, "
                        f"found {len(alphabets)} and {len(characters)}")
    for key, members in characters.items():
        if len(members) != IMAGES_PER_CHARACTER:
            raise PrepError(f"{archive}: {'/'.join(key)} has {len(members)} PNGs, expected "
                            f"{IMAGES_PER_CHARACTER}")
        members.sort()
    return dict(sorted(characters.items()))


def resize(image, resample="nearest"):
    """28x28 version of one 105x105 1-bit drawing."""
    if resample == "nearest":  # == the original's resize(LANCZOS) on mode '1'
        return image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.NEAREST)
    return image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)


def verify_output(folder, resample, check_content=True):
    """Check a prepared folder: 1623 character folders x 20 PNGs, made with `resample`, and
    (`check_content`) every file as its SHA256SUMS recorded it at preparation."""
    folder = Path(folder)
    made_with = read_prep_info(folder).get("resample")
    if made_with != resample:
        raise PrepError(f"{folder} was prepared with --resample={made_with}, not {resample}; "
                        f"delete it or choose another --output_dir")
    characters = [c for a in folder.iterdir() if a.is_dir() for c in a.iterdir() if c.is_dir()]
    if len(characters) != NUM_CHARACTERS:
        raise PrepError(f"{folder} has {len(characters)} character folders, expected "
                        f"{NUM_CHARACTERS}; delete it and rerun")
    for c in characters:
        count = sum(1 for f in c.iterdir() if f.suffix == ".png")
        if count != IMAGES_PER_CHARACTER:
            raise PrepError(f"{c} has {count} PNGs, expected {IMAGES_PER_CHARACTER}; delete "
                            f"{folder} and rerun")
    if check_content:
        verify_content(folder, prepared_files(folder), *_image_kind(resample), log)


def _image_kind(resample):
    return "PNG", "1" if resample == "nearest" else "L", (IMAGE_SIZE, IMAGE_SIZE)


def prepare_omniglot(source_dir, output_dir, resample="nearest", download=False,
                     download_url=DOWNLOAD_URL):
    """Write output_dir/omniglot_resized and return its path; a no-op if already there."""
    if resample not in RESAMPLE_MODES:
        raise PrepError(f"--resample must be one of {RESAMPLE_MODES}, got {resample!r}")
    final = user_path(output_dir) / OUTPUT_NAME
    if final.exists():
        verify_output(final, resample)
        log.info("%s already prepared and verified", final)
        return final
    source_dir = user_path(source_dir)
    if download:
        download_archives(source_dir, download_url)
    per_archive = {name: list_characters(source_dir / name) for name in ARCHIVES}
    checksums = {name: archive_checksums(source_dir / name) for name in ARCHIVES}
    shared = set.intersection(*({a for a, _ in chars} for chars in per_archive.values()))
    if shared:
        raise PrepError(f"alphabet names appear in both archives: {sorted(shared)}")
    with atomic_directory(final) as tmp:
        for name, characters in per_archive.items():
            _resize_archive(source_dir / name, characters, tmp, resample)
        write_prep_info(tmp, {
            "dataset": "omniglot", "resample": resample, "image_size": IMAGE_SIZE,
            "characters": NUM_CHARACTERS, "images_per_character": IMAGES_PER_CHARACTER,
            "archives_sha256": {name: c[2] for name, c in checksums.items()},
            "pillow": Image.__version__})
        verify_output(tmp, resample, check_content=False)
        files = prepared_files(tmp)
        check_images(tmp, files, *_image_kind(resample))
        write_manifest(tmp, files)
    for name, c in checksums.items():  # other bytes, yet every member read back intact (zip CRCs)
        if not is_known_archive(name, c):
            log.warning("%s is not a known Omniglot archive (%s), but its layout and every member's CRC "
                        "are right; used it", source_dir / name, _describe(name, c))
    log.info("wrote %s", final)
    return final


def _resize_archive(archive, characters, out_root, resample):
    try:
        with zipfile.ZipFile(archive) as z:
            progress = ProgressLine(len(characters), f"{archive.name}: resized characters", print_fn=log.info,
                                    every_seconds=10.0)
            for done, ((alphabet, character), members) in enumerate(characters.items(), start=1):
                out = out_root / alphabet / character
                out.mkdir(parents=True)
                for member in members:
                    _resize_member(archive, member, z.read(member), resample).save(
                        out / member.rsplit("/", 1)[1], format="PNG")
                progress.update(done)
    except (zipfile.BadZipFile, zlib.error, EOFError, Image.UnidentifiedImageError) as e:
        raise PrepError(f"{archive} is corrupt (truncated or damaged): {e}; delete it and rerun "
                        f"(--download fetches it again)") from e


def _resize_member(archive, member, data, resample):
    """The resized image of one archive member, which must be an Omniglot drawing: a 1-bit
    SOURCE_SIZE PNG. A member that does not decode (damaged bytes under an intact CRC) or is
    another image is refused naming the archive and the member."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decoded here, so a damaged member is named here and nothing below reads bad bytes
    except (OSError, SyntaxError, ValueError) as e:
        raise PrepError(f"{archive}: {member} does not decode as a PNG ({e}): the archive is damaged; "
                        f"delete it and rerun (--download fetches it again)") from e
    with image:
        if image.format != "PNG" or image.mode != "1" or image.size != SOURCE_SIZE:
            raise PrepError(f"{archive}: {member} is a {image.format} image of mode {image.mode} and "
                            f"size {image.size[0]}x{image.size[1]}, expected a 1-bit PNG of "
                            f"{SOURCE_SIZE[0]}x{SOURCE_SIZE[1]}: not the Omniglot archive?")
        return resize(image, resample)


def main(argv):
    del argv
    from absl import flags
    f = flags.FLAGS
    run_main(lambda: prepare_omniglot(f.source_dir, f.output_dir, f.resample, f.download,
                                      f.download_url), "data_prep.omniglot")


if __name__ == "__main__":
    from absl import flags

    from report import cli

    flags.DEFINE_string("source_dir", None, "folder holding images_background.zip and images_evaluation.zip")
    flags.DEFINE_string("output_dir", None, "folder to create omniglot_resized/ in")
    flags.DEFINE_bool("download", False, "download missing archives from the official repository")
    flags.DEFINE_enum("resample", "nearest", RESAMPLE_MODES,
                      "nearest = the original's output (binary); lanczos = filter on greyscale")
    flags.DEFINE_string("download_url", DOWNLOAD_URL, "where --download fetches the archives from")
    flags.mark_flags_as_required(["source_dir", "output_dir"])
    cli.run(main)
