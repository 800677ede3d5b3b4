'use strict';
'require view';
'require form';
'require uci';
'require rpc';
'require ui';

// The config page over /etc/config/voipgw. LuCI checks the syntax of each field
// (datatype); before anything is saved, the whole unsaved config goes to
// `voipgw validate` through rpcd, so the page shows the CLI's own message
// (voipgw.voice.vid='5000': not a whole number from 1 to 4094) and nothing invalid
// is ever staged.

var callValidate = rpc.declare({
	object: 'voipgw',
	method: 'validate',
	params: [ 'config' ],
	expect: { '': {} },
	reject: true // a failed call rejects (and nothing is saved) instead of resolving to its status code
});

var profiles = [
	[ 'base', _('base: DNS and NTP to anywhere') ],
	[ 'cloudoe-sbc', _('cloudoe-sbc: the SBCs (SIP, TLS, RTP)') ],
	[ 'cloudoe-platform', _('cloudoe-platform: web services, provisioning, CTI') ],
	[ 'yealink', 'Yealink' ],
	[ 'gigaset', 'Gigaset' ],
	[ 'polycom', 'Polycom' ],
	[ 'unity', 'Unity' ],
	[ 'webex', 'Webex' ]
];

// uciQuote writes a value the way `uci export` does.
function uciQuote(v) {
	return "'" + String(v).replace(/'/g, "'\\''") + "'";
}

// uciText is the config as the form has it now (saved values plus this page's
// unsaved changes), in /etc/config syntax. Anonymous sections stay anonymous, so
// messages name them @type[N] exactly as the CLI does.
function uciText() {
	var out = [];
	uci.sections('voipgw').forEach(function(s) {
		out.push('config ' + s['.type'] + (s['.anonymous'] ? '' : ' ' + uciQuote(s['.name'])));
		Object.keys(s).forEach(function(k) {
			if (k.charAt(0) == '.')
				return;
			if (Array.isArray(s[k]))
				s[k].forEach(function(v) { out.push('\tlist ' + k + ' ' + uciQuote(v)); });
			else
				out.push('\toption ' + k + ' ' + uciQuote(s[k]));
		});
		out.push('');
	});
	return out.join('\n');
}

// sectionID maps a label of a message ("voice", "@allow[1]") to the section id.
function sectionID(label) {
	var m = /^@([^\[]+)\[(\d+)\]$/.exec(label || '');
	if (!m)
		return label;
	var s = uci.sections('voipgw', m[1])[+m[2]];
	return s ? s['.name'] : null;
}

// clearIssues removes the messages showIssues showed, and with fields its marks.
function clearIssues(fields) {
	document.querySelectorAll('.voipgw-validate').forEach(function(n) { n.remove(); });
	if (fields) document.querySelectorAll('.voipgw-field-error').forEach(function(n) {
		n.classList.remove('voipgw-field-error', 'cbi-input-invalid');
	});
}

function notify(title, text, cls) {
	var n = ui.addNotification(title, E('p', { 'class': cls == 'danger' ? 'voipgw-error' : '' }, [ text ]), cls); // text: never HTML
	if (n && n.classList)
		n.classList.add('voipgw-validate');
}

// showIssues puts the validator's messages at the top of the page, errors in red,
// and marks the field an error names.
function showIssues(res) {
	clearIssues(true);
	(res.warnings || []).forEach(function(w) { notify(null, w.text, 'warning'); });
	(res.errors || []).forEach(function(e) {
		notify(_('The configuration was not saved'), e.text, 'danger');
		var sid = sectionID(e.section);
		var field = sid && e.option ? document.getElementById('widget.cbid.voipgw.' + sid + '.' + e.option) : null;
		if (field)
			field.classList.add('voipgw-field-error', 'cbi-input-invalid');
	});
}

return view.extend({
	load: function() {
		return uci.load('voipgw');
	},

	render: function() {
		var m, s, o;

		m = new form.Map('voipgw', _('VoIP gateway'),
			_('The IP phones in their own network: their own VLAN and subnet, out only to the SIP provider, never to the LAN, nothing open inbound. Every change is checked by <code>voipgw validate</code> before it is saved.'));

		s = m.section(form.NamedSection, 'main', 'voipgw', _('Router'));
		o = s.option(form.Value, 'wan', _('WAN device'));
		o.datatype = 'maxlength(15)';
		o.rmempty = false;
		o = s.option(form.DynamicList, 'lan', _('LAN devices'), _('No forwarding between these and the phones, either way.'));
		o.datatype = 'maxlength(15)';

		s = m.section(form.TypedSection, 'vlan', _('VoIP network'),
			_('Without a VLAN id the device is the dedicated VoIP port.'));
		s.anonymous = true;
		o = s.option(form.Value, 'device', _('Parent device'));
		o.datatype = 'maxlength(15)';
		o.rmempty = false;
		o = s.option(form.Value, 'vid', _('VLAN id'), _('802.1Q id 1–4094'));
		o.datatype = 'uinteger';
		o = s.option(form.Value, 'ifname', _('Interface name'));
		o.datatype = 'maxlength(15)';
		o = s.option(form.Value, 'ipaddr', _('Gateway IPv4 address'), _('with prefix length, e.g. 192.168.20.1/24'));
		o.datatype = 'cidr4';
		o.rmempty = false;
		o = s.option(form.Value, 'ip6addr', _('Gateway IPv6 address'), _('optional, prefix length 48–64'));
		o.datatype = 'cidr6';
		o = s.option(form.DynamicList, 'ports', _('Access ports'), _('DSA bridge ports made untagged ports of the VLAN'));

		s = m.section(form.TypedSection, 'profile', _('Profiles'),
			_('Destinations from the provider\'s catalog. base, cloudoe-sbc and cloudoe-platform are on unless switched off here.'));
		s.anonymous = true;
		s.addremove = true;
		o = s.option(form.ListValue, 'name', _('Profile'));
		profiles.forEach(function(p) { o.value(p[0], p[1]); });
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.default = '1';
		o.rmempty = false;

		s = m.section(form.TypedSection, 'allow', _('Own allow entries'));
		s.anonymous = true;
		s.addremove = true;
		o = s.option(form.Value, 'name', _('Name'));
		o = s.option(form.DynamicList, 'dest', _('Destinations'), _('host name, *.domain, address or CIDR'));
		o = s.option(form.DynamicList, 'port', _('Ports'), _('udp/5060, tcp/5061, udp/10000-20000, udp-tcp/5060'));
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.default = '1';
		o.rmempty = false;

		s = m.section(form.NamedSection, 'dns', 'dns', _('DNS for the phones'),
			_('The forwarder of voipgw run answers the phones and learns the addresses of allowlisted names (needed for *.domain entries).'));
		s.addremove = true;
		o = s.option(form.Flag, 'forwarder', _('DNS forwarder'));
		o.default = '1';
		o.rmempty = false;
		o = s.option(form.DynamicList, 'upstream', _('Upstream servers'), _('IP or IP:port; empty: the router\'s /etc/resolv.conf'));
		o = s.option(form.Value, 'ttl_floor', _('Keep learned addresses at least (s)'));
		o.datatype = 'uinteger';
		o.placeholder = '300';

		s = m.section(form.NamedSection, 'nat', 'nat', _('NAT for the phones'));
		s.addremove = true;
		o = s.option(form.Flag, 'enabled', _('Full-cone NAT'), _('Off: plain masquerade'));
		o.default = '1';
		o.rmempty = false;
		o = s.option(form.ListValue, 'filtering', _('Inbound filtering'));
		o.value('provider', _('provider: only the allowlisted platform reaches a mapping'));
		o.value('endpoint-independent', _('endpoint-independent: anyone (true full cone)'));
		o.default = 'provider';
		o = s.option(form.Value, 'timeout', _('Mapping timeout (s)'));
		o.datatype = 'uinteger';
		o.placeholder = '300';
		o = s.option(form.Value, 'remap_port', _('Ports for remapped phones'),
			_('FIRST-LAST: external ports of a phone whose own port another phone\'s mapping holds'));
		o.placeholder = '20000-23999';

		s = m.section(form.NamedSection, 'scan', 'scan', _('Port-scan detection'));
		s.addremove = true;
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.default = '1';
		o.rmempty = false;
		o = s.option(form.Value, 'threshold', _('Threshold'), _('unsolicited new connections …'));
		o.datatype = 'uinteger';
		o.placeholder = '10';
		o = s.option(form.Value, 'window', _('Window (s)'), _('… within this many seconds'));
		o.datatype = 'uinteger';
		o.placeholder = '3';
		o = s.option(form.Value, 'timeout', _('Block for (s)'));
		o.datatype = 'uinteger';
		o.placeholder = '3600';

		s = m.section(form.NamedSection, 'dhcp', 'dhcp', _('DHCP for the phones'));
		s.addremove = true;
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.default = '1';
		o.rmempty = false;
		o = s.option(form.Value, 'start', _('Start'));
		o.datatype = 'uinteger';
		o.placeholder = '100';
		o = s.option(form.Value, 'limit', _('Limit'));
		o.datatype = 'uinteger';
		o.placeholder = '150';
		o = s.option(form.Value, 'leasetime', _('Lease time'), _('2m–30d, or seconds'));
		o.placeholder = '12h';
		o = s.option(form.Value, 'provisioning_url', _('Provisioning URL'), _('options 66 and 160; 114 to Gigaset phones'));

		s = m.section(form.TypedSection, 'host', _('Static leases'));
		s.anonymous = true;
		s.addremove = true;
		o = s.option(form.Value, 'name', _('Hostname'));
		o = s.option(form.Value, 'mac', _('MAC address'));
		o.datatype = 'macaddr';
		o = s.option(form.Value, 'ip', _('IPv4 address'));
		o.datatype = 'ip4addr';

		s = m.section(form.NamedSection, 'keepalive', 'keepalive', _('RTP keep-alive'),
			_('Keeps a silent phone\'s media mapping open (hold, mute).'));
		s.addremove = true;
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.default = '1';
		o.rmempty = false;
		o = s.option(form.Value, 'interval', _('Interval (s)'));
		o.datatype = 'uinteger';
		o.placeholder = '15';

		s = m.section(form.NamedSection, 'sip', 'sip', _('SIP'));
		s.addremove = true;
		o = s.option(form.Flag, 'alg', _('Leave SIP ALG on'), _('The provider asks for SIP ALG off (unchecked).'));
		o.default = '0';
		o = s.option(form.DynamicList, 'sip_port', _('SIP ports (udp)'));
		o.datatype = 'portrange';
		o = s.option(form.Value, 'sip_timeout', _('SIP flow timeout (s)'));
		o.datatype = 'uinteger';
		o.placeholder = '300';
		o = s.option(form.DynamicList, 'rtp_port', _('RTP ports (udp)'));
		o.datatype = 'portrange';
		o = s.option(form.Value, 'rtp_timeout', _('RTP flow timeout (s)'));
		o.datatype = 'uinteger';
		o.placeholder = '180';

		this.map = m;
		return m.render();
	},

	handleSave: function(ev) {
		// After the form's own checks (parse) and before uci.save: the server-side
		// validator sees the whole config; a rejection keeps everything unsaved.
		var byValidator = false;
		return this.map.save(function() {
			return callValidate(uciText()).then(function(res) {
				showIssues(res);
				if (res.valid !== true) {
					byValidator = true;
					return Promise.reject(new Error(((res.errors || [])[0] || {}).text || 'invalid'));
				}
			});
		}, true).catch(function(e) {
			if (!byValidator) {
				// older LuCI rejects parse errors with no value
				clearIssues(false);
				notify(_('The configuration was not saved'), (e && e.message) || _('Some fields are invalid, cannot save values!'), 'danger');
			}
			return Promise.reject(e);
		});
	}
});
