package catalog

import "slices"

// This file is the built-in catalog: the provider's network requirements from
// ../shared/seed/000_c90f0c7ffd9825ca.txt transcribed as data, one Entry per
// seed table row, in the seed's order. catalog_test.go re-reads the seed and
// cross-checks every host, address and port against this file, so an edit here
// that drifts from the seed fails the tests.
//
// The seed's tables have no titles of their own; the Notes name them like this:
//   - "SBC table": Host | SIP | SIP Alternative | SIP Alt 2 | SIP Alt 3 | (s)RTP
//   - "Platform table": ws1/ws2, adp5/adp6, cti1/cti2 (the seed's "Zie tabel Platform")
//   - "provisioning table": the Yealink:, Gigaset: and Polycom: sections and the
//     Unity rows that follow them without a heading of their own
//   - the Webex tables, which do have titles ("Webex Services - Port Numbers and
//     Protocols", "IP subnets for media services", "Cisco Webex Services URLs", ...)
//
// Seed notation: "UDP-TCP/x" is udp and tcp, "TLS/x" is tcp, "tcp-udp/x" is
// both. The seed says "Rood is gereserveerd voor toekomstig gebruik" (red is
// reserved for future use) but the colour did not survive into the text, so every
// port listed is transcribed: the reserved ones lead only to the provider's own
// SBCs.

// anywhere is every destination of both address families.
var anywhere = []string{"0.0.0.0/0", "::/0"}

// sbcRTP is the SBCs' (s)RTP media range, the same for every SBC host.
const sbcRTP = "udp/40000-65000"

// webexMediaSubnets is the seed's "IP subnets for media services" table, two
// columns as in the seed. The "*" after some of the seed's subnets is a
// footnote marker (the footnote itself is not in the seed), not part of the CIDR.
var webexMediaSubnets = []string{
	"20.50.235.0/24", "66.114.160.0/20",
	"20.53.87.0/24", "66.163.32.0/19",
	"20.57.87.0/24", "69.26.160.0/19",
	"20.68.154.0/24", "114.29.192.0/19",
	"20.76.127.0/24", "150.253.128.0/17",
	"20.108.99.0/24", "170.72.0.0/16",
	"20.120.238.0/23", "170.133.128.0/18",
	"23.89.0.0/16", "173.39.224.0/19",
	"40.119.234.0/24", "173.243.0.0/20",
	"44.234.52.192/26", "207.182.160.0/19",
	"52.232.210.0/24", "209.197.192.0/19",
	"62.109.192.0/18", "210.4.192.0/20",
	"64.68.96.0/19", "216.151.128.0/19",
}

// builtin is the catalog in its stable order. Never hand it out: Profiles and
// Lookup return deep copies.
var builtin = []Profile{
	{
		Name:        "base",
		Description: "DNS and NTP to any destination, which every phone needs",
		Default:     true,
		Entries: []Entry{
			{Dests: anywhere, Ports: []string{"udp/53", "tcp/53"},
				Note: "seed prose: phones need DNS (no table row; any resolver)"},
			{Dests: anywhere, Ports: []string{"udp/123"},
				Note: "seed prose: phones need NTP (no table row; any time server)"},
		},
	},
	{
		Name:        "cloudoe-sbc",
		Description: "Cloudoe session border controllers: SIP over UDP, TCP and TLS, and (s)RTP media",
		Default:     true,
		Entries: []Entry{
			{Dests: []string{"sbc.icvoip.net"},
				Ports: []string{"udp-tcp/5060", "tcp/5061", "udp-tcp/5080", "tcp/5081", sbcRTP},
				Note:  "SBC table, row sbc.icvoip.net: UDP-TCP/5060 TLS/5061, alt UDP-TCP/5080 TLS/5081, UDP/40000-65000"},
			{Dests: []string{"sbc-bria.icvoip.net"},
				Ports: []string{"udp-tcp/5060", "tcp/5061", "udp-tcp/5075", "tcp/5076", sbcRTP},
				Note:  "SBC table, row sbc-bria.icvoip.net: UDP-TCP/5060 TLS/5061, alt UDP-TCP/5075 TLS/5076, UDP/40000-65000"},
			{Dests: []string{"osbc-tls.icvoip.net"},
				Ports: []string{"udp-tcp/5060", "tcp/5061", "udp-tcp/5075", "tcp/5076", "udp-tcp/5080", "tcp/5081", "udp-tcp/5090", "tcp/5091", sbcRTP},
				Note:  "SBC table, row osbc-tls.icvoip.net: UDP-TCP/5060 TLS/5061, alts UDP-TCP/5075 TLS/5076, UDP-TCP/5080 TLS/5081, UDP-TCP/5090 TLS/5091, UDP/40000-65000"},
			{Dests: []string{"sbc-trunk.icvoip.net"},
				Ports: []string{"udp-tcp/5060", "tcp/5061", "udp-tcp/5090", "tcp/5091", sbcRTP},
				Note:  "SBC table, row sbc-trunk.icvoip.net: UDP-TCP/5060 TLS/5061, alt UDP-TCP/5090 TLS/5091, UDP/40000-65000"},
		},
	},
	{
		Name:        "cloudoe-platform",
		Description: "Cloudoe platform web services, device provisioning and CTI",
		Default:     true,
		Entries: []Entry{
			{Dests: []string{"ws1.icvoip.net"}, Ports: []string{"tcp/80", "tcp/443", "tcp/2209", "tcp/8012"},
				Note: "Platform table, row ws1.icvoip.net"},
			{Dests: []string{"ws2.icvoip.net"}, Ports: []string{"tcp/80", "tcp/443", "tcp/2209", "tcp/8012"},
				Note: "Platform table, row ws2.icvoip.net"},
			{Dests: []string{"adp5.wbx.icvoip.net"}, Ports: []string{"tcp/443"},
				Note: "Platform table, row adp5.wbx.icvoip.net"},
			{Dests: []string{"adp6.wbx.icvoip.net"}, Ports: []string{"tcp/443"},
				Note: "Platform table, row adp6.wbx.icvoip.net"},
			{Dests: []string{"cti1.wbx.icvoip.net"}, Ports: []string{"tcp/8012"},
				Note: "Platform table, row cti1.wbx.icvoip.net"},
			{Dests: []string{"cti2.wbx.icvoip.net"}, Ports: []string{"tcp/8012"},
				Note: "Platform table, row cti2.wbx.icvoip.net"},
		},
	},
	{
		Name:        "yealink",
		Description: "Yealink provisioning, redirect (RPS), firmware updates and device management (YMCS)",
		Entries: []Entry{
			{Dests: []string{"d.voice2000.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row d.voice2000.com"},
			{Dests: []string{"voice2000.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row voice2000.com"},
			{Dests: []string{"update.yealink.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row update.yealink.com"},
			{Dests: []string{"eu-device-scheduler.ymcs.yealink.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row eu-device-scheduler.ymcs.yealink.com"},
			{Dests: []string{"eu-app-scheduler.ymcs.yealink.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row eu-app-scheduler.ymcs.yealink.com"},
			{Dests: []string{"redirect.ymcs.yealink.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row redirect.ymcs.yealink.com"},
			{Dests: []string{"eu-device.ymcs.yealink.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row eu-device.ymcs.yealink.com"},
			{Dests: []string{"eu-app.ymcs.yealink.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row eu-app.ymcs.yealink.com"},
			{Dests: []string{"eu-app-req.ymcs.yealink.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row eu-app-req.ymcs.yealink.com"},
			{Dests: []string{"eu-device-compat-req.ymcs.yealink.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row eu-device-compat-req.ymcs.yealink.com"},
			{Dests: []string{"rps.yealink.com"}, Ports: []string{"tcp/443", "tcp-udp/5061"},
				Note: "provisioning table, Yealink section, row rps.yealink.com: tcp/443, tcp-udp/5061"},
			{Dests: []string{"rpscloud.yealink.com"}, Ports: []string{"tcp/443", "tcp-udp/5061"},
				Note: "provisioning table, Yealink section, row rpscloud.yealink.com: tcp/443, tcp-udp/5061"},
			{Dests: []string{"20.19.96.56"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row 20.19.96.56 (literal address)"},
			{Dests: []string{"20.19.96.62"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Yealink section, row 20.19.96.62 (literal address)"},
		},
	},
	{
		Name:        "gigaset",
		Description: "Gigaset provisioning",
		Entries: []Entry{
			{Dests: []string{"profile.gigaset.net"}, Ports: []string{"tcp/80", "tcp/443"},
				Note: "provisioning table, Gigaset section, row profile.gigaset.net"},
			{Dests: []string{"prov.gigaset.net"}, Ports: []string{"tcp/80", "tcp/443"},
				Note: "provisioning table, Gigaset section, row prov.gigaset.net"},
		},
	},
	{
		Name:        "polycom",
		Description: "Polycom zero-touch provisioning",
		Entries: []Entry{
			{Dests: []string{"ztp.polycom.com"}, Ports: []string{"tcp/80", "tcp/443"},
				Note: "provisioning table, Polycom section, row ztp.polycom.com"},
		},
	},
	{
		// The seed lists these rows after the Polycom section without a
		// heading; the host names say they belong to the Unity client.
		Name:        "unity",
		Description: "Unity client (portal, IM, contact and attachment services)",
		Entries: []Entry{
			{Dests: []string{"portal.unityclient.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Unity rows (no heading), row portal.unityclient.com"},
			{Dests: []string{"im.unityclient.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Unity rows (no heading), row im.unityclient.com"},
			{Dests: []string{"cs.unityclient.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Unity rows (no heading), row cs.unityclient.com"},
			{Dests: []string{"attach.unityclient.com"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Unity rows (no heading), row attach.unityclient.com"},
			{Dests: []string{"uatt.ch"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Unity rows (no heading), row uatt.ch"},
			{Dests: []string{"52.17.201.131"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Unity rows (no heading), row 52.17.201.131 (literal address)"},
			{Dests: []string{"99.80.25.98"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Unity rows (no heading), row 99.80.25.98 (literal address)"},
			{Dests: []string{"54.73.202.3"}, Ports: []string{"tcp/443"},
				Note: "provisioning table, Unity rows (no heading), row 54.73.202.3 (literal address)"},
		},
	},
	{
		// The Webex port table gives ports without destinations. Its rows are
		// mapped to destinations by what they say: NTP and DNS go anywhere
		// (as in base, so webex also works without it), the media rows go to
		// the media subnets, and HTTPS signalling on tcp/443 goes to the
		// domains of the URL tables (the domain entries below carry it).
		// tcp/444 (Video Mesh Node cascade signalling "to the Webex cloud")
		// names no destination; it goes to the media subnets, where the cloud
		// media nodes live.
		//
		// Of the seed's additional and deprecated domains, the profile allows
		// the Cisco-owned one and the third-party ones that phones and room
		// devices themselves need (certificate revocation, Webex Assistant);
		// webexOmitted lists the rest with the reason for each.
		Name:        "webex",
		Description: "Webex devices and apps: signalling to the Webex domains, media to the Webex media subnets",
		Entries: []Entry{
			{Dests: anywhere, Ports: []string{"udp/123"},
				Note: "Webex port table, row 123 UDP: NTP (no destination given: anywhere)"},
			{Dests: anywhere, Ports: []string{"udp-tcp/53"},
				Note: "Webex port table, row 53 UDP TCP: DNS (no destination given: anywhere)"},
			{Dests: webexMediaSubnets, Ports: []string{"tcp/444"},
				Note: "Webex port table, row 444 TLS: Video Mesh Node cascade signalling to the Webex cloud; to the media subnets"},
			{Dests: webexMediaSubnets, Ports: []string{"udp/5004", "udp/9000"},
				Note: "Webex port table, row 5004 and 9000 SRTP over UDP; to the IP subnets for media services"},
			{Dests: webexMediaSubnets, Ports: []string{"udp/50000-53000"},
				Note: "Webex port table, row 50,000 - 53,000 SRTP over UDP (Video Mesh Node only); to the media subnets"},
			{Dests: webexMediaSubnets, Ports: []string{"tcp/5004"},
				Note: "Webex port table, row 5004 SRTP over TCP; to the IP subnets for media services"},
			{Dests: webexMediaSubnets, Ports: []string{"tcp/443"},
				Note: "Webex port table, row 443 (2) SRTP over TLS (media fallback); to the IP subnets for media services"},
			{Dests: []string{"*.wbx2.com", "*.ciscospark.com", "*.webexapis.com"}, Ports: []string{"tcp/443"},
				Note: "Cisco Webex Services URLs, row *.wbx2.com *.ciscospark.com *.webexapis.com: Webex micro-services; port 443 from the port table"},
			{Dests: []string{"*.webex.com", "*.cisco.com"}, Ports: []string{"tcp/443"},
				Note: "Cisco Webex Services URLs, row *.webex.com *.cisco.com: Meetings, identity, device onboarding"},
			{Dests: []string{"*.webexcontent.com"}, Ports: []string{"tcp/443"},
				Note: "Cisco Webex Services URLs, row *.webexcontent.com (1): file storage and device logs"},
			{Dests: []string{"*.accompany.com"}, Ports: []string{"tcp/443"},
				Note: "Additional Webex related services - Cisco Owned domains, row *.accompany.com: kept because Cisco-owned"},
			{Dests: []string{"speech.googleapis.com"}, Ports: []string{"tcp/443"},
				Note: "Additional Webex related services - Third Party domains, row speech.googleapis.com: Webex Assistant on room devices (opt-in); kept, a single host"},
			{Dests: []string{"*.quovadisglobal.com", "*.digicert.com", "*.godaddy.com", "*.identrust.com", "*.lencr.org"}, Ports: []string{"tcp/80", "tcp/443"},
				Note: "Additional Webex related services - Third Party domains, CRL row: certificate revocation for all devices; kept, with tcp/80 because CRL and OCSP are served over plain HTTP"},
			{Dests: []string{"*.intel.com"}, Ports: []string{"tcp/80", "tcp/443"},
				Note: "Additional Webex related services - Third Party domains, row *.intel.com: CRL/OCSP for background-image certificates on all devices; kept, with tcp/80 for CRL and OCSP"},
		},
	},
}

// omission is a seed destination the catalog deliberately leaves out.
type omission struct {
	Dest   string
	Reason string
}

// webexOmitted are the domains of the seed's Webex URL tables that the webex
// profile does not allow. The profile is for phones and Webex room devices on the
// voice network; these serve only the desktop, mobile or web Webex App, browser
// add-ins or e-mail, are deprecated since 2019, or are general-purpose hosting
// (a wildcard on them would open much of the internet). A site that runs the
// Webex App on the voice network can allow them in its own configuration.
var webexOmitted = []omission{
	{"*.sparkpostmail1.com", "third party: e-mail for newsletters and registration, not used by devices"},
	{"*.sparkpostmail.com", "third party: e-mail for newsletters and registration, not used by devices"},
	{"*.giphy.com", "third party: GIFs in the Webex App only"},
	{"safebrowsing.googleapis.com", "third party: URL checks in the Webex App only"},
	{"*.walkme.com", "third party: user guidance in the web based apps only"},
	{"msftncsi.com", "third party: connectivity check fallback of the Webex App only (seed: msftncsi.com/ncsi.txt)"},
	{"captive.apple.com", "third party: connectivity check fallback of the Webex App only (seed: captive.apple.com/hotspot-detect.html)"},
	{"*.appdynamics.com", "third party: Webex App and Web App telemetry only"},
	{"*.eum-appdynamics.com", "third party: Webex App and Web App telemetry only"},
	{"*.amplitude.com", "third party: Web App and Android App A/B testing only"},
	{"*.vbrickrev.com", "third party: Webex Events webcasts viewed by attendees' browsers"},
	{"*.slido.com", "third party: Slido PowerPoint add-in and web pages, not devices"},
	{"*.sli.do", "third party: Slido PowerPoint add-in and web pages, not devices"},
	{"*.data.logentries.com", "third party: Slido logging, not devices"},
	{"slido-assets-production.s3.eu-west-1.amazonaws.com", "third party: Slido assets for the add-in and web pages, not devices"},
	{"*.google.com", "third party: mobile push notifications for the Webex App only; general-purpose domain"},
	{"*.googleapis.com", "third party: mobile push notifications for the Webex App only; general-purpose domain"},
	{"cdnjs.cloudflare.com", "third party: Webex Scheduler for Outlook (browser) only; public CDN"},
	{"cdn.jsdelivr.net", "third party: Webex Scheduler for Outlook (browser) only; public CDN"},
	{"static2.sharepointonline.com", "third party: Webex Scheduler for Outlook (browser) only"},
	{"appsforoffice.microsoft.com", "third party: Webex Scheduler for Outlook (browser) only"},
	{"*.clouddrive.com", "deprecated: replaced by webexcontent.com in October 2019"},
	{"*.ciscosparkcontent.com", "deprecated: log uploads moved to *.webexcontent.com"},
	{"*.rackcdn.com", "deprecated: CDN for clouddrive.com; general-purpose hosting"},
}

// Profiles returns the built-in profiles in a stable order (base, cloudoe-sbc,
// cloudoe-platform, yealink, gigaset, polycom, unity, webex). The result is a
// fresh deep copy: the caller may modify it.
func Profiles() []Profile {
	out := make([]Profile, len(builtin))
	for i, p := range builtin {
		out[i] = p.clone()
	}
	return out
}

// Lookup returns a copy of the built-in profile with this name.
func Lookup(name string) (Profile, bool) {
	for _, p := range builtin {
		if p.Name == name {
			return p.clone(), true
		}
	}
	return Profile{}, false
}

// DefaultProfiles returns the names of the profiles enabled unless the config
// says otherwise, in catalog order: base, cloudoe-sbc, cloudoe-platform.
func DefaultProfiles() []string {
	var names []string
	for _, p := range builtin {
		if p.Default {
			names = append(names, p.Name)
		}
	}
	return names
}

func (p Profile) clone() Profile {
	q := p
	q.Entries = make([]Entry, len(p.Entries))
	for i, e := range p.Entries {
		q.Entries[i] = Entry{Dests: slices.Clone(e.Dests), Ports: slices.Clone(e.Ports), Note: e.Note}
	}
	return q
}
