"""Engine catalogs and deterministic verdicts for the VirusTotal emulator.

Two catalogs, both taken from real VirusTotal bodies in ``tests/samples/vt``:
antivirus engines that scan files (with the version strings VirusTotal reported)
and URL/domain/IP blocklist engines. :func:`file_verdicts` and
:func:`url_verdicts` turn a seeded ``random.Random`` and a positives count into
per-engine results; the same seed always gives the same results.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

#: (engine, engine_version) as VirusTotal reported them in 2024 file reports.
FILE_ENGINES: tuple[tuple[str, str], ...] = (
    ("Bkav", "2.0.0.1"), ("Lionic", "8.16"), ("AVG", "23.9.8494.0"), ("tehtris", "v0.1.4"),
    ("MicroWorld-eScan", "14.0.409.0"), ("CMC", "2.4.2022.1"), ("CAT-QuickHeal", "22.00"),
    ("Skyhigh", "v2021.2.0+4045"), ("ALYac", "2.0.0.10"), ("Cylance", "3.0.0.0"),
    ("Zillya", "2.0.0.5162"), ("Sangfor", "2.25.10.0"), ("K7AntiVirus", "12.177.52741"),
    ("Alibaba", "0.3.0.5"), ("K7GW", "12.177.52741"), ("CrowdStrike", "1.0"),
    ("Arcabit", "2022.0.0.18"), ("huorong", "e2b848c:e2b848c:fa3d6e1:fa3d6e1"),
    ("Baidu", "1.0.0.2"), ("VirIT", "9.5.754"), ("Symantec", "1.22.0.0"), ("Elastic", "4.0.157"),
    ("ESET-NOD32", "29633"), ("Cynet", "4.0.1.1"), ("APEX", "6.557"), ("Paloalto", "0.9.0.1003"),
    ("ClamAV", "1.3.1.0"), ("Kaspersky", "22.0.1.28"), ("BitDefender", "7.2"),
    ("NANO-Antivirus", "1.0.146.25796"), ("SUPERAntiSpyware", "5.6.0.1032"),
    ("Avast", "23.9.8494.0"), ("Tencent", "1.0.0.1"), ("TACHYON", "2024-07-29.01"),
    ("Emsisoft", "2024.1.0.53752"), ("F-Secure", "18.10.1547.307"), ("DrWeb", "7.0.65.5230"),
    ("VIPRE", "6.0.0.35"), ("TrendMicro", "11.0.0.1006"), ("McAfeeD", "1.2.0.7977"),
    ("Trapmine", "4.0.16.173"), ("FireEye", "35.47.0.0"), ("Sophos", "2.5.5.0"),
    ("Ikarus", "6.3.12.0"), ("Jiangmin", "16.0.100"), ("Webroot", "1.0.0.403"),
    ("Varist", "6.5.1.2"), ("Avira", "8.3.3.20"), ("Antiy-AVL", "3.0"), ("Gridinsoft", "1.0.183.174"),
    ("Xcitium", "36911"), ("Microsoft", "1.1.24060.5"), ("ViRobot", "2014.3.20.0"),
    ("ZoneAlarm", "1.0"), ("GData", "A:25.38576B:27.36890"), ("Google", "1722223854"),
    ("AhnLab-V3", "3.26.0.10499"), ("Acronis", "1.2.0.121"), ("McAfee", "6.0.6.653"),
    ("MAX", "2023.1.4.1"), ("VBA32", "5.0.0"), ("Malwarebytes", "4.5.5.54"), ("Panda", "4.6.4.2"),
    ("TrendMicro-HouseCall", "10.0.0.1040"), ("Rising", "25.0.0.27"), ("Yandex", "5.5.2.24"),
    ("SentinelOne", "24.2.1.1"), ("MaxSecure", "1.0.0.1"), ("Fortinet", "7.0.30.0"),
    ("BitDefenderTheta", "7.2.37796.0"), ("Zoner", "2.2.2.0"), ("Cybereason", "1.2.449"),
    ("DeepInstinct", "5.0.0.8"), ("Trustlook", "1.0"), ("SymantecMobileInsight", "2.0"),
)

#: Mobile-only engines answer "type-unsupported" for Windows files, as in real reports.
TYPE_UNSUPPORTED: frozenset[str] = frozenset({"Trustlook", "SymantecMobileInsight"})

#: URL / domain / IP blocklist engines (v3 ``last_analysis_results`` of URL reports).
URL_ENGINES: tuple[str, ...] = (
    "CMC Threat Intelligence", "Snort IP sample list", "0xSI_f33d", "Armis", "ViriBack",
    "Comodo Valkyrie Verdict", "PhishLabs", "K7AntiVirus", "CINS Army", "Cyren", "Quttera",
    "BlockList", "OpenPhish", "VX Vault", "Feodo Tracker", "Web Security Guard", "Scantitan",
    "AlienVault", "Sophos", "Phishtank", "EonScope", "Cyan", "Spam404", "SecureBrain",
    "Hoplite Industries", "CRDF", "Rising", "Fortinet", "alphaMountain.ai", "Lionic",
    "Virusdie External Site Scan", "Artists Against 419", "Google Safebrowsing", "SafeToOpen",
    "ADMINUSLabs", "CyberCrime", "Heimdal Security", "AutoShun", "Trustwave", "AICC (MONITORAPP)",
    "CyRadar", "Dr.Web", "Emsisoft", "Abusix", "Webroot", "Avira", "securolytics", "Antiy-AVL",
    "Acronis", "Quick Heal", "DNS8", "benkow.cc", "EmergingThreats", "Chong Lua Dao",
    "Yandex Safebrowsing", "Lumu", "zvelo", "Kaspersky", "Sucuri SiteCheck", "desenmascara.me",
    "URLhaus", "PREBYTES", "StopForumSpam", "Blueliv", "Netcraft", "ZeroCERT", "Phishing Database",
    "MalwarePatrol", "Sangfor", "IPsum", "Spamhaus", "BitDefender", "GreenSnow", "G-Data",
    "Forcepoint ThreatSeeker", "Certego", "ESET", "ThreatHive", "Tencent",
)

#: Engines that answer "unrated" rather than "clean" for things they do not know.
UNRATED: frozenset[str] = frozenset({
    "0xSI_f33d", "Armis", "Cyan", "Lumu", "SecureBrain", "Hoplite Industries", "Virusdie External Site Scan",
    "AutoShun", "Trustwave", "Scantitan",
})

#: v2 url/report scans carry a ``detail`` link for these engines.
URL_DETAIL: dict[str, str] = {
    "MalwarePatrol": "http://www.malwarepatrol.net/cgi/submit?action=list",
    "Phishtank": "http://www.phishtank.com/phish_search.php?valid=y&active=All&Search=Search",
    "URLhaus": "https://urlhaus.abuse.ch/browse.php?search=",
    "Sucuri SiteCheck": "https://sitecheck.sucuri.net/results/",
}

FAMILIES: tuple[str, ...] = (
    "Emotet", "AgentTesla", "Qakbot", "RedLine", "Formbook", "Remcos", "AsyncRAT", "Lokibot",
    "NanoCore", "Zbot", "Dridex", "TrickBot", "CobaltStrike", "Ursnif", "IcedID", "NjRAT",
    "Glupteba", "Raccoon", "Vidar", "Sality", "Ramnit", "Virut", "Zusy", "Razy", "Sirefef",
)

_TEMPLATES: tuple[str, ...] = (
    "Trojan.GenericKD.{n}", "Win32:{F}-{A} [Trj]", "a variant of Win32/{F}.{A}",
    "HEUR:Trojan.Win32.{F}.gen", "Gen:Variant.{F}.{n}", "Trojan ( {h8} )", "W32/{F}.{A}!tr",
    "Trojan:Win32/{F}.{A}!MTB", "Backdoor.{F}", "Trojan.Win32.{F}.{a}", "TR/{F}.{n}",
    "Malware.Win32.Gencirc.{h8}", "Generic.mg.{h16}", "malicious (high confidence)", "Unsafe",
    "Static AI - Malicious PE", "Trojan-Spy.MSIL.{F}", "Troj/{F}-{A}", "BehavesLike.Win32.{F}.vc",
    "W32.AIDetectMalware",
)

_URL_MALICIOUS = ("malicious", "malware", "phishing")


@dataclass(frozen=True, slots=True)
class EngineResult:
    """One engine's answer. ``category`` uses the v3 vocabulary."""

    engine: str
    category: str          # malicious | suspicious | undetected | harmless | type-unsupported | timeout
    result: str | None
    version: str | None = None
    update: str | None = None   # YYYYMMDD
    detail: str | None = None   # v2 url/report only

    @property
    def detected(self) -> bool:
        return self.category in ("malicious", "suspicious")


def detection_result(rng: random.Random, family: str) -> str:
    """A plausible AV detection name for ``family``."""
    template = rng.choice(_TEMPLATES)
    return template.format(
        F=family, A=rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ"),
        a=rng.choice("abcdefghijklmnopqrstuvwxyz") * 3, n=rng.randrange(10_000, 99_999_999),
        h8=f"{rng.getrandbits(32):08x}", h16=f"{rng.getrandbits(64):016x}",
    )


@lru_cache(maxsize=512)
def _clean_file_results(update: str) -> tuple[EngineResult, ...]:
    return tuple(EngineResult(name, "type-unsupported" if name in TYPE_UNSUPPORTED else "undetected", None,
                              version, update) for name, version in FILE_ENGINES)


def file_verdicts(rng: random.Random, positives: int, family: str, update: str) -> list[EngineResult]:
    """Results of every file engine; exactly ``positives`` engines detect (malicious/suspicious)."""
    out = list(_clean_file_results(update))
    if positives <= 0:
        return out
    scanning = [i for i, (name, _) in enumerate(FILE_ENGINES) if name not in TYPE_UNSUPPORTED]
    for i in sorted(rng.sample(scanning, min(positives, len(scanning)))):
        name, version = FILE_ENGINES[i]
        category = "suspicious" if rng.random() < 0.05 else "malicious"
        out[i] = EngineResult(name, category, detection_result(rng, family), version, update)
    return out


_CLEAN_URL_RESULTS: tuple[EngineResult, ...] = tuple(
    EngineResult(name, "undetected", "unrated", detail=URL_DETAIL.get(name)) if name in UNRATED
    else EngineResult(name, "harmless", "clean", detail=URL_DETAIL.get(name)) for name in URL_ENGINES)


def url_verdicts(rng: random.Random, positives: int) -> list[EngineResult]:
    """Results of every URL engine; exactly ``positives`` engines flag it."""
    out = list(_CLEAN_URL_RESULTS)
    if positives <= 0:
        return out
    kind = rng.choice(_URL_MALICIOUS)
    for i in sorted(rng.sample(range(len(URL_ENGINES)), min(positives, len(URL_ENGINES)))):
        name = URL_ENGINES[i]
        category = "suspicious" if rng.random() < 0.1 else "malicious"
        out[i] = EngineResult(name, category, "suspicious" if category == "suspicious" else kind,
                              detail=URL_DETAIL.get(name))
    return out


def stats(results: list[EngineResult], *, file: bool) -> dict[str, int]:
    """v3 ``last_analysis_stats`` / analysis ``stats`` for ``results``."""
    keys = ["harmless", "malicious", "suspicious", "undetected", "timeout"]
    if file:
        keys += ["confirmed-timeout", "failure", "type-unsupported"]
    counts = dict.fromkeys(keys, 0)
    for r in results:
        counts[r.category] = counts.get(r.category, 0) + 1
    return counts


def positives_for(rng: random.Random, total: int) -> int:
    """A positives count with VirusTotal's shape: mostly clean, a long malicious tail."""
    return positives_from(rng.random(), rng.random(), total)


def positives_from(roll: float, spread: float, total: int) -> int:
    """:func:`positives_for` from two uniform numbers in [0, 1): 68 % clean, 12 % 1-3, 20 % 10-80 %."""
    if roll < 0.68:
        return 0
    if roll < 0.80:
        return 1 + int(spread * 3)
    low, high = max(4, total // 10), max(5, int(total * 0.8))
    return low + int(spread * (high - low + 1))
