'use strict';
'require view';
'require rpc';
'require poll';
'require ui';

// The status page: `voipgw status --json` through rpcd, refreshed every 10 s, and
// the STUN / SIP-ALG self-tests of `voipgw diagnose --json`.
//
// Data goes into E() inside arrays: LuCI's E() sets a lone string child as
// innerHTML, and hostnames and vendors come from the phones' DHCP requests.

// reject: a failed call (ubus status other than 0, e.g. no JSON from the plugin)
// rejects instead of resolving to the numeric status.
var callStatus = rpc.declare({
	object: 'voipgw',
	method: 'status',
	expect: { '': {} },
	reject: true
});

var callDiagnose = rpc.declare({
	object: 'voipgw',
	method: 'diagnose',
	params: [ 'stun', 'sip_echo' ],
	expect: { '': {} },
	reject: true
});

var counterNames = [
	[ 'allowed', _('allowed (new flows)') ],
	[ 'blocked_not_allowlisted', _('blocked: not allowlisted') ],
	[ 'blocked_lan', _('blocked: to/from the LAN') ],
	[ 'blocked_inbound', _('blocked: unsolicited inbound') ],
	[ 'blocked_router', _('blocked: to the router') ],
	[ 'scanners_detected', _('scanners detected') ],
	[ 'scanners', _('packets dropped from scanners') ],
	[ 'nat_inbound', _('NAT: inbound through a mapping') ],
	[ 'nat_remapped', _('NAT: remapped (port taken)') ],
	[ 'nat_exhausted', _('NAT: dropped, no free port') ]
];

function table(id, head, rows, empty) {
	if (!rows.length)
		return E('p', { 'id': id, 'class': 'voipgw-empty' }, E('em', [ empty ]));
	return E('table', { 'id': id, 'class': 'table' }, [
		E('tr', { 'class': 'tr table-titles' }, head.map(function(h) { return E('th', { 'class': 'th' }, [ h ]); }))
	].concat(rows.map(function(r) {
		return E('tr', { 'class': 'tr' }, r.map(function(c) { return E('td', { 'class': 'td' }, [ c ]); }));
	})));
}

function section(title, children) {
	return E('div', { 'class': 'cbi-section' }, [ E('h3', [ title ]) ].concat(children));
}

function seconds(ns) {
	var s = Math.round((ns || 0) / 1e9);
	if (s >= 3600) return Math.floor(s / 3600) + 'h' + Math.floor(s % 3600 / 60) + 'm';
	if (s >= 60) return Math.floor(s / 60) + 'm' + (s % 60) + 's';
	return s + 's';
}

function renderStatus(st) {
	var f = st.firewall || {}, i = st.interface || {}, feat = st.features || {};
	var nodes = [];

	var problems = st.problems || [];
	if (!st.firewall)
		problems = [ _('voipgw status returned no usable data (is /usr/sbin/voipgw installed?)') ];
	nodes.push(E('div', { 'id': 'voipgw-problems', 'class': problems.length ? 'alert-message error' : 'alert-message success',
		'style': problems.length ? 'color:#fff;background:#c00' : '' },
		problems.length ? [ E('strong', _('Problems')), E('ul', problems.map(function(p) { return E('li', [ p ]); })) ]
			: E('strong', _('OK: no problems'))));

	nodes.push(section(_('VoIP network'), table('voipgw-interface', [ _('Interface'), _('State'), _('Addresses'), _('Forwarding') ],
		i.exists ? [[ i.name + (i.vid ? ' (VLAN ' + i.vid + ' on ' + i.parent + ')' : ' (' + (i.kind || '') + ')'),
			(i.up ? 'up' : 'DOWN') + ', ' + (i.oper_state || ''),
			(i.addrs || []).filter(function(a) { return a.indexOf('fe80:') != 0; }).join(' '),
			'IPv4 ' + (i.forwarding4 ? 'on' : 'off') + ', IPv6 ' + (i.forwarding6 ? 'on' : 'off') ]] : [],
		_('The VoIP interface %s does not exist').format(i.name || '?'))));

	var phones = Array.isArray(feat.dhcp) ? feat.dhcp : [];
	nodes.push(section(_('Phones (DHCP leases)'), table('voipgw-phones', [ _('MAC'), _('IP'), _('Hostname'), _('Vendor'), _('Lease expires in') ],
		phones.map(function(p) { return [ p.mac, p.ip + (p.static ? ' (static)' : ''), p.hostname || '', p.vendor || '', p.expires_in ]; }),
		feat.dhcp ? _('No phone has a lease') : _('The DHCP server is off'))));

	var nat = feat.nat, k = nat ? nat.kernel || {} : {};
	nodes.push(section(nat ? _('Full-cone NAT (filtering %s)').format(nat.filtering) : _('NAT'), [
		nat ? E('p', _('%d mappings, %d inbound entries, %d conflicts, %d active media flows').format(
			(k.mappings || []).length, k.inbound_entries || 0, k.conflicts || 0, k.media_flows_active || 0)) : '',
		table('voipgw-mappings', [ _('Phone'), _('External'), _('Expires in'), '' ],
			(k.mappings || []).map(function(m) {
				return [ m.internal, (nat.wan_address || 'WAN') + ':' + m.external_port, seconds(m.expires),
					m.reachable ? '' : E('span', { 'style': 'color:#c00' }, _('conflict: another endpoint holds this port')) ];
			}), nat ? _('No mappings') : _('Full-cone NAT is off (plain masquerade)'))
	]));

	var dns = feat.dns;
	var dnsInfo = '';
	if (dns && dns.running && dns.daemon) {
		var ds = dns.daemon.stats || {};
		dnsInfo = E('p', _('Forwarder: %d queries, %d learned, %d refreshed, %d evicted, %d errors').format(
			ds.queries || 0, ds.learned || 0, ds.refreshed || 0, ds.evicted || 0, ds.learn_errors || 0));
	} else if (dns) {
		dnsInfo = E('p', { 'style': 'color:#c00' }, _('The DNS forwarder is not running (start voipgw run)'));
	}
	nodes.push(section(_('Learned DNS addresses'), [ dnsInfo,
		table('voipgw-learned', [ _('Address'), _('Ports'), _('Names'), _('Expires in') ],
			(dns ? dns.learned || [] : []).map(function(l) { return [ l.addr, l.ports, (l.names || []).join(' '), l.expires_in ]; }),
			dns ? _('Nothing learned yet') : _('The DNS forwarder is off')) ]));

	var counters = f.counters || {};
	nodes.push(section(_('Counters'), [
		table('voipgw-counters', [ _('Counter'), _('Packets'), _('Bytes') ],
			counterNames.filter(function(c) { return counters[c[0]]; }).map(function(c) {
				var v = counters[c[0]];
				var hot = c[0] != 'allowed' && c[0] != 'nat_inbound' && v.packets > 0;
				return [ c[1], E('span', { 'style': hot ? 'font-weight:bold' : '' }, String(v.packets)), String(v.bytes) ];
			}), f.present ? _('No counters') : _('Table inet %s is not installed').format(f.table || 'voipgw')),
		E('p', _('Scanners blocked now: %d').format((st.scanners || []).length)),
		E('ul', { 'id': 'voipgw-scanners' }, (st.scanners || []).map(function(s) { return E('li', [ s ]); }))
	]));

	var sip = feat.sip, sipRows = [];
	if (sip) {
		var r = sip.report || {};
		(r.rules || []).forEach(function(x) {
			sipRows.push([ _('rule'), x.family + ' ' + x.table + ' chain ' + x.chain + ' (handle ' + x.handle + ')',
				x.neutralised ? _('neutralised') : E('span', { 'style': 'color:#c00' }, _('active')) ]);
		});
		(r.modules || []).forEach(function(x) { sipRows.push([ _('module'), x.name, x.state ]); });
		sipRows.push([ _('conntrack'), _('VoIP entries with the sip helper'),
			(r.flows || []).length ? E('span', { 'style': 'color:#c00' }, String(r.flows.length)) : '0' ]);
		Object.keys(sip.timeouts || {}).sort().forEach(function(n) {
			var t = sip.timeouts[n];
			sipRows.push([ _('ct timeout'), n, _('unreplied %ds, replied %ds').format(t.unreplied, t.replied) ]);
		});
	}
	nodes.push(section(_('SIP helper (ALG)'), [
		sip && sip.alg ? E('p', { 'style': 'color:#c00' }, _('sip.alg is 1: the system\'s SIP helpers are left alone; the provider asks for SIP ALG off')) : '',
		table('voipgw-sip', [ '', '', _('State') ], sipRows, _('No SIP state'))
	]));

	var ka = feat.keepalive;
	if (ka) {
		var ks = ka.daemon ? ka.daemon.stats || {} : {};
		nodes.push(section(_('RTP keep-alive'), ka.running
			? E('p', _('%d flows tracked, %d keep-alives sent, %d send errors').format(ks.flows_tracked || 0, ks.keepalives_sent || 0, ks.send_errors || 0))
			: E('p', { 'style': 'color:#c00' }, _('Not running (start voipgw run)'))));
	}

	nodes.push(E('p', { 'class': 'voipgw-footer' }, [ _('Table inet %s: %d chains, %d rules, config %s').format(
		f.table || '?', f.chains || 0, f.rules || 0, f.config_hash || '-') ]));
	return E('div', { 'id': 'voipgw-status' }, nodes);
}

function renderDiagnose(res) {
	if (res.error)
		return E('p', { 'style': 'color:#c00' }, [ res.error ]);
	return E('div', (res.checks || []).map(function(c) {
		return E('div', { 'class': 'voipgw-check' }, [
			E('h4', { 'style': c.ok ? 'color:#080' : 'color:#c00' }, [ (c.ok ? '✔ ' : '✘ ') + c.check + ' ' + c.target ]),
			E('pre', [ (c.output || []).join('\n') + (c.error ? '\n' + c.error : '') ])
		]);
	}));
}

return view.extend({
	load: function() {
		return callStatus();
	},

	render: function(st) {
		var box = E('div', { 'id': 'voipgw-status-box' }, renderStatus(st));
		poll.add(function() {
			return callStatus().then(function(s) {
				box.replaceChildren(renderStatus(s));
			});
		}, 10); // status dumps conntrack (SIP helper check): not every 5 s on a small router

		// The targets are remembered in this browser (not in the router's config).
		var remembered = function(k) { try { return window.localStorage.getItem('voipgw.' + k) || ''; } catch (e) { return ''; } };
		var remember = function(k, v) { try { window.localStorage.setItem('voipgw.' + k, v); } catch (e) {} };
		var stun = E('input', { 'id': 'voipgw-stun', 'class': 'cbi-input-text', 'placeholder': 'stun.example.net:3478', 'value': remembered('stun') });
		var echo = E('input', { 'id': 'voipgw-sip-echo', 'class': 'cbi-input-text', 'placeholder': 'echo.example.net:5060', 'value': remembered('sip_echo') });
		var out = E('div', { 'id': 'voipgw-diagnose-result' });
		var diag = E('div', { 'class': 'cbi-section' }, [
			E('h3', _('Diagnose')),
			E('p', _('Runs the self-tests on the router: the NAT type towards an RFC 5780 STUN server (voipgw stun-server), sent from the VoIP gateway address so the phones\' NAT rules apply, and the SIP ALG probe against a voipgw sip-echo. An ALG that firewall4 attaches to traffic arriving from the phones is not on the router\'s own path: the SIP helper table above is the check for that.')),
			E('div', [ E('label', _('STUN server')), ' ', stun, ' ', E('label', _('SIP echo')), ' ', echo, ' ',
				E('button', {
					'id': 'voipgw-diagnose',
					'class': 'cbi-button cbi-button-action',
					'click': ui.createHandlerFn(this, function() {
						remember('stun', stun.value.trim());
						remember('sip_echo', echo.value.trim());
						out.replaceChildren(E('em', { 'class': 'spinning' }, _('Running the self-tests…')));
						return callDiagnose(stun.value, echo.value).then(function(res) {
							out.replaceChildren(renderDiagnose(res));
						}).catch(function(e) {
							// e.g. a session without the ACL's write grant
							out.replaceChildren(E('p', { 'style': 'color:#c00' }, [ _('Diagnose failed: %s').format(e.message) ]));
						});
					})
				}, _('Diagnose')) ]),
			out
		]);
		return E('div', [ E('h2', _('VoIP gateway')), box, diag ]);
	},

	handleSave: null,
	handleSaveApply: null,
	handleReset: null
});
