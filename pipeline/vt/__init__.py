"""The VirusTotal side: the HTTP client and the pace/quota governor."""
