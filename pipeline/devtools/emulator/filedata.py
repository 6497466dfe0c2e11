"""Deterministic facts about any file, for the v3 file object and the v2 allinfo report.

Every file is a Windows PE, so every key of the ThreatQ submit_file report table
has a value (PE header data, resources, imports, sigcheck, behaviour-v1,
contacted domains), and every file also carries Office summary metadata
(``officecheck`` / ``office_info``) so that those rows can be produced too.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache

from pipeline.devtools.emulator.data import (
    file_positives, hexstr, past, random_domain, random_ip, random_sha256,
    random_url, seeded, v2_date,
)
from pipeline.devtools.emulator.engines import FAMILIES, EngineResult, file_verdicts

_IMPORTS: dict[str, tuple[str, ...]] = {
    "KERNEL32.dll": ("GetProcAddress", "LoadLibraryA", "VirtualAlloc", "VirtualProtect", "CreateFileW",
                     "WriteFile", "ReadFile", "CloseHandle", "GetModuleHandleW", "CreateProcessW",
                     "Sleep", "GetTempPathW", "CreateMutexW", "OpenMutexW", "ExitProcess"),
    "USER32.dll": ("MessageBoxW", "GetWindowTextW", "FindWindowW", "SetWindowsHookExW", "GetForegroundWindow"),
    "ADVAPI32.dll": ("RegOpenKeyExW", "RegSetValueExW", "RegCloseKey", "CryptAcquireContextW", "OpenProcessToken"),
    "WS2_32.dll": ("WSAStartup", "socket", "connect", "send", "recv", "gethostbyname"),
    "WININET.dll": ("InternetOpenW", "InternetOpenUrlW", "InternetReadFile", "HttpSendRequestW"),
    "SHELL32.dll": ("ShellExecuteW", "SHGetFolderPathW"),
    "ole32.dll": ("CoInitialize", "CoCreateInstance"),
    "mscoree.dll": ("_CorExeMain",),
}
_LANGS = ("ENGLISH US", "NEUTRAL", "RUSSIAN", "CHINESE SIMPLIFIED", "GERMAN", "PORTUGUESE BRAZILIAN")
_RES_TYPES = ("RT_ICON", "RT_GROUP_ICON", "RT_VERSION", "RT_MANIFEST", "RT_RCDATA", "RT_DIALOG", "RT_STRING")
_PRODUCTS = (("Microsoft Corporation", "Windows Update Helper"), ("Adobe Systems", "Acrobat Updater"),
             ("Oracle", "Java Platform SE"), ("Mozilla", "Firefox Installer"), ("Piriform", "CCleaner"),
             ("", "setup"), ("WinRAR", "WinRAR archiver"), ("Google LLC", "Google Update"))
_SANDBOXES = ("VirusTotal Jujubox", "Zenbox", "C2AE", "CAPE Sandbox", "VirusTotal Cuckoofork")
_TRID = (("Win32 Executable MS Visual C++ (generic)", 47.3), ("Win64 Executable (generic)", 15.9),
         ("Win32 Dynamic Link Library (generic)", 11.2), ("Win32 Executable (generic)", 7.6),
         ("Generic Win/DOS Executable", 3.4))


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What a sandbox saw (v2 behaviour-v1 / v3 file_behaviour)."""

    sandbox: str
    process_tree: list[dict[str, object]]
    runtime_dlls: list[tuple[str, bool]]
    mutexes_opened: list[str]
    mutexes_created: list[str]
    files: dict[str, list[str]]          # opened/read/written/moved/downloaded/replaced/deleted/copied -> paths
    dns: list[tuple[str, str]]           # (hostname, ip)
    tcp: list[str]                       # "ip:port"
    udp: list[str]
    http: list[tuple[str, str]]          # (url, method)


@dataclass(frozen=True, slots=True)
class FileFacts:
    sha256: str
    sha1: str
    md5: str
    size: int
    ssdeep: str
    authentihash: str
    tlsh: str
    vhash: str
    names: list[str]
    meaningful_name: str
    type_description: str
    type_tag: str
    magic: str
    trid: list[tuple[str, float]]
    exiftool: dict[str, str]
    first_seen: int
    last_analysis_date: int
    last_submission_date: int
    times_submitted: int
    unique_sources: int
    positives_delta: int
    verdicts: list[EngineResult]
    votes: tuple[int, int]
    reputation: int
    tags: list[str]
    pe_timestamp: int
    imphash: str
    machine_type: int
    entry_point: int
    resource_langs: dict[str, int]
    resource_types: dict[str, int]
    resource_details: list[dict[str, object]]
    imports: dict[str, list[str]]
    main_icon: dict[str, str]
    sigcheck: dict[str, str]
    deepguard: str
    behaviour: Behaviour
    contacted_domains: list[str]
    contacted_ips: list[str]
    contacted_urls: list[str]
    itw_urls: list[str]
    dropped_files: list[str]
    execution_parents: list[str]
    office: dict[str, dict[str, object]]    # document_summary_info, summary_info
    family: str

    @property
    def positives(self) -> int:
        return sum(1 for r in self.verdicts if r.detected)


def derived_hashes(value: str) -> tuple[str, str, str]:
    """(md5, sha1, sha256) for a file known only by ``value`` (any of the three)."""
    rng = seeded("file-hashes", value)
    md5 = value if len(value) == 32 else hexstr(rng, 16)
    sha1 = value if len(value) == 40 else hexstr(rng, 20)
    sha256 = value if len(value) == 64 else hexstr(rng, 32)
    return md5, sha1, sha256


def _ssdeep(rng: random.Random, size: int) -> str:
    block = 3
    while block * 64 < size:
        block *= 2
    def chunk(n: int) -> str:
        return base64.b64encode(rng.randbytes(n)).decode().rstrip("=")
    return f"{block}:{chunk(rng.randint(30, 48))}:{chunk(rng.randint(15, 24))}"


def _behaviour(rng: random.Random, sha256: str, domains: list[str], ips: list[str], urls: list[str]) -> Behaviour:
    exe = rng.choice(("svchost.exe", "update.exe", "setup.exe", "invoice.exe", sha256[:10] + ".exe"))
    child = rng.choice(("cmd.exe", "powershell.exe", "reg.exe", "schtasks.exe", "conhost.exe"))
    tree: list[dict[str, object]] = [{"pid": rng.randint(300, 4000), "name": exe,
                                      "children": [{"pid": rng.randint(300, 4000), "name": child, "children": []}]}]
    dlls = [(d, rng.random() > 0.1) for d in rng.sample(
        ["kernel32.dll", "ntdll.dll", "advapi32.dll", "ws2_32.dll", "wininet.dll", "crypt32.dll",
         "rsaenh.dll", "shell32.dll", "ole32.dll", "version.dll", "mswsock.dll"], 6)]
    temp = "C:\\Users\\<USER>\\AppData\\Local\\Temp\\"
    drop = f"{temp}{hexstr(rng, 4)}.exe"
    files = {
        "opened": ["C:\\Windows\\System32\\rsaenh.dll", "\\\\.\\PIPE\\lsarpc", f"C:\\Windows\\System32\\{child}"],
        "read": ["C:\\Windows\\System32\\drivers\\etc\\hosts"],
        "written": [drop, f"{temp}config.dat"],
        "moved": [f"{temp}~tmp{rng.randint(1, 99)}.tmp"],
        "downloaded": [f"{temp}{rng.choice(('payload', 'stage2', 'upd'))}.bin"],
        "replaced": ["C:\\Users\\<USER>\\AppData\\Roaming\\Microsoft\\Windows\\Start Menu\\Programs\\Startup\\run.lnk"],
        "deleted": [f"C:\\Users\\<USER>\\Desktop\\{exe}"],
        "copied": [f"C:\\ProgramData\\{exe}"],
    }
    return Behaviour(
        sandbox=rng.choice(_SANDBOXES), process_tree=tree, runtime_dlls=dlls,
        mutexes_opened=["ShimCacheMutex", "Local\\ZonesCacheCounterMutex"],
        mutexes_created=[f"Global\\{hexstr(rng, 8)}", f"Local\\{rng.choice(('RM', 'AX', 'QK'))}{rng.randint(100, 999)}"],
        files=files, dns=[(d, ip) for d, ip in zip(domains, ips)],
        tcp=[f"{ip}:{rng.choice((80, 443, 8080, 4444))}" for ip in ips], udp=["<MACHINE_DNS_SERVER>:53"],
        http=[(u, rng.choice(("GET", "POST"))) for u in urls],
    )


@lru_cache(maxsize=4096)
def file_facts(value: str, md5: str | None = None, sha1: str | None = None, size: int | None = None,
               name: str | None = None, scanned_at: int | None = None) -> FileFacts:
    """Facts for the file known by hash ``value``; real hashes/size/name override derived ones."""
    d_md5, d_sha1, d_sha256 = derived_hashes(value)
    sha256 = d_sha256
    md5, sha1 = md5 or d_md5, sha1 or d_sha1
    rng = seeded("file", sha256)
    positives = file_positives(sha256)
    family = rng.choice(FAMILIES)
    size = size if size is not None else rng.randint(8_000, 4_000_000)
    first = past(rng, 1800, 60)
    last = scanned_at or past(rng, 59)
    pe_ts = first - rng.randint(0, 400) * 86_400
    vendor, product = rng.choice(_PRODUCTS)
    original = name or f"{product.split()[0].lower()}.exe"
    dll = rng.random() < 0.25
    type_description = "Win32 DLL" if dll else "Win32 EXE"
    entry = rng.randint(0x1000, 0x90000)
    libs = rng.sample(sorted(_IMPORTS), rng.randint(2, 5))
    imports = {lib: sorted(rng.sample(_IMPORTS[lib], min(len(_IMPORTS[lib]), rng.randint(1, 6)))) for lib in libs}
    lang = rng.choice(_LANGS)
    res_types = {t: rng.randint(1, 4) for t in rng.sample(_RES_TYPES, rng.randint(2, 4))}
    details: list[dict[str, object]] = [{"sha256": random_sha256(rng), "lang": lang, "chi2": round(rng.uniform(1000, 900_000), 2),
                "filetype": rng.choice(("data", "PNG image data", "XML 1.0 document text", "ASCII text")),
                "entropy": round(rng.uniform(1.5, 7.99), 6), "type": t}
               for t, n in res_types.items() for _ in range(n)]
    domains = [random_domain(rng) for _ in range(rng.randint(1, 4))]
    ips = [random_ip(rng) for _ in domains]
    urls = [random_url(rng, d) for d in domains[: rng.randint(1, len(domains))]]
    signed = vendor and rng.random() < 0.5
    ts_text = _exif_time(pe_ts)
    return FileFacts(
        sha256=sha256, sha1=sha1, md5=md5, size=size, ssdeep=_ssdeep(rng, size),
        authentihash=hexstr(rng, 32), tlsh="T1" + hexstr(rng, 35).upper(), vhash=f"{rng.randint(10**14, 10**15)}z{hexstr(rng, 4)}",
        names=[original, f"{sha256[:16]}.exe", rng.choice(("sample.bin", "file.exe", "invoice_2024.exe"))],
        meaningful_name=original, type_description=type_description, type_tag="pedll" if dll else "peexe",
        magic=f"PE32 executable for MS Windows ({'DLL' if dll else 'GUI'}) Intel 80386 32-bit",
        trid=list(_TRID), exiftool={
            "MIMEType": "application/octet-stream", "Subsystem": "Windows GUI",
            "MachineType": "Intel 386 or later, and compatibles", "TimeStamp": ts_text,
            "FileType": type_description, "PEType": "PE32", "CodeSize": str(rng.randint(4, 900) * 512),
            "LinkerVersion": rng.choice(("6.0", "9.0", "14.0", "14.29")), "FileTypeExtension": "dll" if dll else "exe",
            "EntryPoint": hex(entry), "OSVersion": "5.1", "ImageVersion": "0.0", "SubsystemVersion": "5.1",
            "CompanyName": vendor, "ProductName": product, "OriginalFileName": original,
        },
        first_seen=first, last_analysis_date=last, last_submission_date=last, times_submitted=rng.randint(1, 60),
        unique_sources=rng.randint(1, 40), positives_delta=rng.randint(-2, 5) if positives else 0,
        verdicts=file_verdicts(rng, positives, family, update_date(last)),
        votes=(rng.randint(0, 3), rng.randint(1, 8) if positives else 0),
        reputation=-positives if positives else rng.randint(0, 3),
        tags=["peexe" if not dll else "pedll", "overlay"] + (["signed"] if signed else []),
        pe_timestamp=pe_ts, imphash=hexstr(rng, 16), machine_type=332, entry_point=entry,
        resource_langs={lang: len(details)}, resource_types=res_types, resource_details=details,
        imports=imports, main_icon={"raw_md5": hexstr(rng, 16), "dhash": hexstr(rng, 8)},
        sigcheck={"publisher": vendor or "n/a", "product": product, "internal name": original,
                  "original name": original, "file version": f"{rng.randint(1, 12)}.{rng.randint(0, 9)}.{rng.randint(0, 999)}.0",
                  "description": product, "copyright": f"Copyright (C) {vendor or 'n/a'}",
                  "signing date": _sig_time(pe_ts) if signed else "",
                  "verified": "Signed" if signed else "Unsigned", "link date": _sig_time(pe_ts)},
        deepguard="Suspicious:W32/Malware!Online" if positives > 10 else "Clean",
        behaviour=_behaviour(rng, sha256, domains, ips, urls),
        contacted_domains=domains, contacted_ips=ips, contacted_urls=urls,
        itw_urls=[random_url(rng, random_domain(rng)) for _ in range(rng.randint(0, 3))],
        dropped_files=[random_sha256(rng) for _ in range(rng.randint(0, 3))],
        execution_parents=[random_sha256(rng) for _ in range(rng.randint(0, 2))],
        office=_office(rng, vendor, pe_ts),
        family=family,
    )


def _office(rng: random.Random, vendor: str, ts: int) -> dict[str, dict[str, object]]:
    return {
        "document_summary_info": {"company": vendor or "n/a", "code_page": "Latin I", "line_count": rng.randint(1, 90),
                                  "paragraph_count": rng.randint(1, 30), "characters_with_spaces": rng.randint(100, 9000),
                                  "version": 1048576 + rng.randint(0, 9999)},
        "summary_info": {"application_name": "Microsoft Office Word", "author": rng.choice(("admin", "user", "Windows User")),
                         "code_page": "Latin I", "creation_datetime": v2_date(ts), "last_saved": v2_date(ts + 3600),
                         "template": "Normal.dotm", "page_count": rng.randint(1, 9), "word_count": rng.randint(10, 2000),
                         "revision_number": str(rng.randint(1, 9)), "title": ""},
    }


def _exif_time(ts: int) -> str:
    return v2_date(ts).replace("-", ":") + "+00:00"


def _sig_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%I:%M %p %m/%d/%Y")


def update_date(ts: int) -> str:
    """An engine's signature date as VirusTotal writes it (YYYYMMDD)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y%m%d")


def file_analysis_id(md5: str, epoch: int) -> str:
    """v3 file analysis id: base64 of ``md5:epoch``."""
    return base64.b64encode(f"{md5}:{epoch}".encode()).decode()


__all__ = ["Behaviour", "FileFacts", "derived_hashes", "file_analysis_id", "file_facts"]
