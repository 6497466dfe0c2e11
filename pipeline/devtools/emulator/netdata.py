"""Deterministic facts about IP addresses, domains and URLs (see ``data`` for the seeding rules).

Keywords in a URL that force rarely-present v2 fields, for tests:
``redirect`` -> ``additional_info.redirector``; ``unreachable`` ->
``additional_info["URL contact error"]``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from urllib.parse import urlsplit

from pipeline.devtools.emulator.data import (
    REFERENCE_EPOCH, URL_TOTAL, WORDS, Samples, UrlRef, hexstr, positives_of, past, random_domain, random_ip,
    random_sha256, random_url, samples_for, seeded, sha256_of, url_positives, url_refs, v2_date, valid_domain,
    valid_ip,
)
from pipeline.devtools.emulator.engines import EngineResult, url_verdicts

_DAY = 86_400


# --------------------------------------------------------------------------- networks

#: (asn, owner, country, continent, rir). Synthetic on purpose: documentation ASNs (RFC 5398)
#: and owners that say EMULATOR, so no drawn fact reads as a wrong real-world one. Indicators
#: with a recorded VirusTotal answer get that instead (:mod:`pipeline.devtools.emulator.recorded`).
NETWORKS: tuple[tuple[int, str, str, str, str], ...] = (
    (64496, "EMULATOR-NET-01 (synthetic)", "US", "NA", "ARIN"),
    (64497, "EMULATOR-NET-02 (synthetic)", "US", "NA", "ARIN"),
    (64498, "EMULATOR-NET-03 (synthetic)", "US", "NA", "ARIN"),
    (64499, "EMULATOR-NET-04 (synthetic)", "US", "NA", "ARIN"),
    (64500, "EMULATOR-NET-05 (synthetic)", "US", "NA", "ARIN"),
    (64501, "EMULATOR-NET-06 (synthetic)", "US", "NA", "ARIN"),
    (64502, "EMULATOR-NET-07 (synthetic)", "US", "NA", "ARIN"),
    (64503, "EMULATOR-NET-08 (synthetic)", "US", "NA", "ARIN"),
    (64504, "EMULATOR-NET-09 (synthetic)", "FR", "EU", "RIPE NCC"),
    (64505, "EMULATOR-NET-10 (synthetic)", "DE", "EU", "RIPE NCC"),
    (64506, "EMULATOR-NET-11 (synthetic)", "DE", "EU", "RIPE NCC"),
    (64507, "EMULATOR-NET-12 (synthetic)", "DE", "EU", "RIPE NCC"),
    (64508, "EMULATOR-NET-13 (synthetic)", "NL", "EU", "RIPE NCC"),
    (64509, "EMULATOR-NET-14 (synthetic)", "RO", "EU", "RIPE NCC"),
    (64510, "EMULATOR-NET-15 (synthetic)", "RU", "EU", "RIPE NCC"),
    (64511, "EMULATOR-NET-16 (synthetic)", "RU", "EU", "RIPE NCC"),
    (65536, "EMULATOR-NET-17 (synthetic)", "MD", "EU", "RIPE NCC"),
    (65537, "EMULATOR-NET-18 (synthetic)", "ES", "EU", "RIPE NCC"),
    (65538, "EMULATOR-NET-19 (synthetic)", "CN", "AS", "APNIC"),
    (65539, "EMULATOR-NET-20 (synthetic)", "CN", "AS", "APNIC"),
    (65540, "EMULATOR-NET-21 (synthetic)", "CN", "AS", "APNIC"),
    (65541, "EMULATOR-NET-22 (synthetic)", "KR", "AS", "APNIC"),
    (65542, "EMULATOR-NET-23 (synthetic)", "JP", "AS", "APNIC"),
    (65543, "EMULATOR-NET-24 (synthetic)", "VN", "AS", "APNIC"),
    (65544, "EMULATOR-NET-25 (synthetic)", "BR", "SA", "LACNIC"),
    (65545, "EMULATOR-NET-26 (synthetic)", "EG", "AF", "AFRINIC"),
)


@dataclass(frozen=True)
class IpFacts:
    ip: str
    asn: int
    as_owner: str
    country: str
    continent: str
    network: str
    rir: str
    whois: str
    whois_date: int
    last_analysis_date: int
    last_modification_date: int
    reputation: int
    votes: tuple[int, int]          # (harmless, malicious)
    tags: tuple[str, ...]
    verdicts: list[EngineResult]
    resolutions: list[tuple[str, int]]   # (host_name, date), newest first
    malicious: bool
    whois_ids: list[str] = field(default_factory=list)

    # The related lists are drawn only when asked for (v2 reports, relationships).
    @cached_property
    def urls(self) -> list[UrlRef]:
        rng = seeded("ip", self.ip, "urls")
        hosts = [h for h, _ in self.resolutions]
        return url_refs(rng, hosts or [self.ip], rng.randint(0, 8) if hosts else rng.randint(0, 2))

    @cached_property
    def samples(self) -> Samples:
        return samples_for(seeded("ip", self.ip, "samples"), self.malicious)


@lru_cache(maxsize=4096)
def ip_facts(ip: str) -> IpFacts:
    rng = seeded("ip", ip)
    asn, owner, country, continent, rir = rng.choice(NETWORKS)
    addr = ipaddress.ip_address(ip)
    prefix = 24 if addr.version == 4 else 48
    network = str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
    positives = positives_of("ip", ip, URL_TOTAL) // 3
    verdicts = url_verdicts(rng, positives)
    whois_date = past(rng, 400)
    hosts = [random_domain(rng) for _ in range(rng.randint(0, 12))]
    resolutions = sorted(((h, past(rng, 1500)) for h in hosts), key=lambda r: -r[1])
    whois = (f"NetRange: {network}\nCIDR: {network}\nNetName: {owner.split()[0].upper()}-NET\n"
             f"OriginAS: AS{asn}\nOrganization: {owner}\nCountry: {country}\nRegDate: "
             f"{v2_date(past(rng, 5000, 2000))[:10]}\nUpdated: {v2_date(whois_date)[:10]}\n"
             f"OrgAbuseEmail: abuse@{owner.split()[0].lower().strip(',.')}.example\n")
    return IpFacts(
        ip=ip, asn=asn, as_owner=owner, country=country, continent=continent, network=network, rir=rir,
        whois=whois, whois_date=whois_date, last_analysis_date=past(rng, 30),
        last_modification_date=past(rng, 10), reputation=-positives * 7 if positives else rng.randint(0, 40),
        votes=(rng.randint(0, 30), rng.randint(0, 10 if positives else 2)),
        tags=(), verdicts=verdicts, resolutions=resolutions, malicious=positives > 0,
        whois_ids=[hexstr(rng, 32) for _ in range(rng.randint(1, 3))],
    )


# --------------------------------------------------------------------------- domains

_REGISTRARS = ("MarkMonitor Inc.", "GoDaddy.com, LLC", "NameCheap, Inc.", "NameSilo, LLC", "Tucows Domains Inc.",
               "Alibaba Cloud Computing (Beijing) Co., Ltd.", "REG.RU LLC", "Gandi SAS", "PDR Ltd. d/b/a PublicDomainRegistry.com")
_CATS_CLEAN = (("computersandsoftware", "information technology", "Information Technology"),
               ("business", "business and economy", "Business/Economy"),
               ("news", "news and media", "News"), ("onlineshop", "shopping", "Shopping"),
               ("education", "educational institutions", "Education"), ("financial", "financial data and services", "Finance"))
_CATS_BAD = (("malware", "malicious web sites", "Malicious"), ("phishing", "phishing and other frauds", "Phishing"),
             ("spam", "spyware and adware", "Suspicious"))


@dataclass(frozen=True)
class DomainFacts:
    domain: str
    categories: dict[str, str]       # vendor -> category (v3)
    v2_categories: list[str]
    whois: str
    whois_date: int
    creation_date: int
    registrar: str
    dns_records: list[dict[str, object]]
    dns_date: int
    popularity: dict[str, dict[str, int]]
    last_analysis_date: int
    last_modification_date: int
    reputation: int
    votes: tuple[int, int]
    verdicts: list[EngineResult]
    resolutions: list[tuple[str, int]]   # (ip, date)
    siblings: list[str]
    subdomains: list[str]
    webutation: dict[str, object]
    opera: str
    malicious: bool
    whois_ids: list[str] = field(default_factory=list)

    @cached_property
    def urls(self) -> list[UrlRef]:
        rng = seeded("domain", self.domain, "urls")
        return url_refs(rng, [self.domain] + self.subdomains, rng.randint(1, 10) if self.malicious else rng.randint(0, 3))

    @cached_property
    def samples(self) -> Samples:
        return samples_for(seeded("domain", self.domain, "samples"), self.malicious)


@lru_cache(maxsize=4096)
def domain_facts(domain: str) -> DomainFacts:
    rng = seeded("domain", domain)
    positives = positives_of("domain", domain, URL_TOTAL) // 2
    bad = positives > 0
    bd, fp, am = rng.choice(_CATS_BAD if bad else _CATS_CLEAN)
    created = past(rng, 7000, 30)
    whois_date = past(rng, 200)
    registrar = rng.choice(_REGISTRARS)
    ips = [random_ip(rng) for _ in range(rng.randint(1, 6))]
    parent = domain.split(".", 1)[1] if domain.count(".") >= 2 else domain
    whois = (f"Creation Date: {v2_date(created).replace(' ', 'T')}Z\nDomain Name: {domain.upper()}\n"
             f"Registrar: {registrar}\nRegistry Expiry Date: {v2_date(REFERENCE_EPOCH + 300 * _DAY).replace(' ', 'T')}Z\n"
             f"Updated Date: {v2_date(whois_date).replace(' ', 'T')}Z\nName Server: ns1.{parent}\n"
             f"Name Server: ns2.{parent}\nDNSSEC: unsigned\nRegistrant Country: {rng.choice(('US', 'DE', 'RU', 'CN', 'PA', 'IS'))}\n")
    dns: list[dict[str, object]] = [{"type": "A", "value": ip, "ttl": rng.choice((60, 300, 3600))} for ip in ips[:2]]
    dns += [{"type": "NS", "value": f"ns{i}.{parent}", "ttl": 21600} for i in (1, 2)]
    dns.append({"type": "MX", "value": f"mail.{parent}", "priority": 10, "ttl": 3600})
    dns.append({"type": "SOA", "value": f"ns1.{parent}", "rname": f"hostmaster.{parent}", "serial": rng.randint(2019010100, 2024123199),
                "refresh": 7200, "retry": 3600, "expire": 1209600, "minimum": 3600, "ttl": 3600})
    popularity = {} if bad else {v: {"rank": rng.randint(100, 900_000), "timestamp": past(rng, 20)}
                                 for v in ("Majestic", "Cisco Umbrella", "Cloudflare Radar") if rng.random() < 0.6}
    sub_n = rng.randint(0, 6)
    subdomains = sorted({f"{rng.choice(WORDS)}.{domain}" for _ in range(sub_n)})
    siblings = sorted({f"{rng.choice(WORDS)}.{parent}" for _ in range(rng.randint(0, 3))} - {domain}) if parent != domain else []
    return DomainFacts(
        domain=domain,
        categories={"Forcepoint ThreatSeeker": fp, "BitDefender": bd, "Dr.Web": rng.choice(("known infection source", "social networks", "chats")) if bad else fp,
                    "alphaMountain.ai": am, "Sophos": fp},
        v2_categories=[fp, bd],
        whois=whois, whois_date=whois_date, creation_date=created, registrar=registrar, dns_records=dns,
        dns_date=past(rng, 15), popularity=popularity, last_analysis_date=past(rng, 30),
        last_modification_date=past(rng, 10), reputation=-positives * 5 if bad else rng.randint(0, 20),
        votes=(rng.randint(0, 20), rng.randint(1, 9) if bad else 0),
        verdicts=url_verdicts(rng, positives),
        resolutions=sorted(((ip, past(rng, 1500)) for ip in ips), key=lambda r: -r[1]),
        siblings=siblings, subdomains=subdomains,
        webutation={"Safety score": rng.randint(0, 40) if bad else rng.randint(60, 100),
                    "Adult content": "no", "Verdict": "malicious" if bad else "safe"},
        opera="The URL domain/host was seen to host badware at some point in time" if bad else "No known threats",
        malicious=bad, whois_ids=[hexstr(rng, 32) for _ in range(rng.randint(1, 3))],
    )


# --------------------------------------------------------------------------- URLs

_TITLES = ("Sign in", "Index of /", "Welcome", "Log in to your account", "Home", "Download", "404 Not Found",
           "Verify your identity", "Invoice", "Just a moment...")


@dataclass(frozen=True, slots=True)
class UrlFacts:
    url: str
    url_id: str
    host: str
    final_url: str
    title: str
    categories: dict[str, str]
    http_code: int
    verdicts: list[EngineResult]
    first_submission_date: int
    last_submission_date: int
    last_analysis_date: int
    times_submitted: int
    threat_names: list[str]
    reputation: int
    votes: tuple[int, int]
    tags: list[str]
    serving_ip: str
    serving_country: str
    redirector: str | None
    contact_error: str | None
    filescan_id: str | None
    downloaded_files: list[str]
    redirecting_urls: list[str]


@lru_cache(maxsize=4096)
def url_facts(url: str, scanned_at: int | None = None) -> UrlFacts:
    rng = seeded("url", url)
    host = urlsplit(url).hostname or ""
    positives = url_positives(url)
    bad = positives > 0
    bd, fp, am = rng.choice(_CATS_BAD if bad else _CATS_CLEAN)
    ip = host if valid_ip(host) else ip_facts_serving(host)
    first = past(rng, 1500, 40)
    last = scanned_at or past(rng, 39)
    redirect = "redirect" in url or rng.random() < 0.2
    unreachable = "unreachable" in url or rng.random() < 0.1
    downloads = [random_sha256(rng) for _ in range(rng.randint(1, 3) if bad and rng.random() < 0.6 else 0)]
    final = random_url(rng, random_domain(rng)) if redirect else url
    return UrlFacts(
        url=url, url_id=sha256_of(url), host=host, final_url=final,
        title=rng.choice(_TITLES), categories={"Forcepoint ThreatSeeker": fp, "BitDefender": bd, "alphaMountain.ai": am,
                                               "Sophos": fp},
        http_code=0 if unreachable else rng.choice((200, 200, 200, 301, 302, 403, 404)),
        verdicts=url_verdicts(rng, positives), first_submission_date=first, last_submission_date=last,
        last_analysis_date=last, times_submitted=rng.randint(1, 400),
        threat_names=[rng.choice(("Mal/HTMLGen-A", "C2/Generic-A", "Phish/Generic", "Troj/JSRedir-A"))] if bad else [],
        reputation=-positives * 4 if bad else rng.randint(0, 5),
        votes=(rng.randint(0, 5), rng.randint(1, 6) if bad else 0),
        tags=(["downloads-pe"] if downloads else []) + (["redirector"] if redirect else []),
        serving_ip=ip, serving_country=rng.choice(NETWORKS)[2],
        redirector=final if redirect else None,
        contact_error="Connection timed out" if unreachable else None,
        filescan_id=f"{downloads[0]}-{last}" if downloads else None,
        downloaded_files=downloads,
        redirecting_urls=[random_url(rng, random_domain(rng)) for _ in range(rng.randint(0, 3))],
    )


def ip_facts_serving(host: str) -> str:
    """The IP a host resolved to last (the newest resolution of the domain)."""
    if not valid_domain(host):
        return random_ip(seeded("host", host))
    return domain_facts(host).resolutions[0][0]


def synthetic_url(url_id: str) -> str:
    """A stand-in URL for a sha256 URL id the emulator never saw."""
    rng = seeded("url-id", url_id)
    return random_url(rng, random_domain(rng))
