'use strict';
// A stand-in for the part of LuCI's client-side runtime (luci.js, form.js, rpc.js,
// uci.js, ui.js) that luci-app-voipgw's views use, for the browser test only. It
// loads a view file the way luci.js does ('require' lines, the source wrapped in
// a function of the required classes), talks JSON-RPC to /ubus like rpc.js, and
// renders form maps into LuCI's markup (cbi-* classes, widget.cbid.* ids). It is
// NOT LuCI: no theme, no translations, no session or login, no apply/rollback,
// only the widgets and datatypes listed below.

(function() {
	var rpcID = 1;

	String.prototype.format = function() {
		var args = arguments, i = 0;
		return this.replace(/%([sd%])/g, function(m, c) {
			if (c == '%') return '%';
			var v = args[i++];
			return c == 'd' ? String(Math.floor(+v || 0)) : String(v);
		});
	};
	window._ = function(s) { return s; };

	function E(tag, attrs, children) {
		if (Array.isArray(attrs) || typeof attrs == 'string' || attrs instanceof Node || attrs == null && children === undefined) {
			children = attrs;
			attrs = {};
		}
		var n = document.createElement(tag);
		Object.keys(attrs || {}).forEach(function(k) {
			var v = attrs[k];
			if (v == null) return;
			if (typeof v == 'function') n.addEventListener(k, v);
			else n.setAttribute(k, v);
		});
		append(n, children);
		return n;
	}
	// As LuCI's dom.append: an array's strings become text nodes, a lone string
	// child becomes innerHTML (so a view that passes data alone is caught).
	function append(n, c) {
		if (c == null || c === '') return;
		if (Array.isArray(c)) {
			c.forEach(function(x) {
				if (x instanceof Node) n.appendChild(x);
				else if (x != null) n.appendChild(document.createTextNode(String(x)));
			});
			return;
		}
		if (c instanceof Node) { n.appendChild(c); return; }
		n.innerHTML = String(c);
	}
	window.E = E;

	function extend(base, props) {
		var C = function() { if (this.__init__) this.__init__.apply(this, arguments); };
		C.prototype = Object.create(base.prototype);
		Object.keys(props).forEach(function(k) { C.prototype[k] = props[k]; });
		C.extend = function(p) { return extend(C, p); };
		return C;
	}
	function Base() {}
	Base.extend = function(p) { return extend(Base, p); };

	// rpc.js: JSON-RPC 2.0 "call" to /ubus, params [session, object, method, args].
	var rpc = {
		declare: function(d) {
			return function() {
				var args = {}, a = arguments;
				(d.params || []).forEach(function(p, i) { if (a[i] !== undefined) args[p] = a[i]; });
				return fetch('/ubus', {
					method: 'POST',
					headers: { 'Content-Type': 'application/json' },
					body: JSON.stringify({ jsonrpc: '2.0', id: rpcID++, method: 'call', params: [ 'standin-session', d.object, d.method, args ] })
				}).then(function(r) { return r.json(); }).then(function(r) {
					// As rpc.js documents it: a JSON-RPC error rejects; a non-zero ubus
					// status rejects only with reject: true, else it is the result;
					// expect's one key selects the value and gives the default.
					if (r.error) throw new Error('RPC call to ' + d.object + '/' + d.method + ' failed with error ' + r.error.code + ': ' + r.error.message);
					var code = r.result[0];
					if (d.reject && code !== 0) throw new Error('RPC call to ' + d.object + '/' + d.method + ' failed with ubus code ' + code);
					var ret = r.result.length > 1 ? r.result[1] : code;
					for (var key in (d.expect || {})) {
						if (ret != null && key != '') ret = ret[key];
						if (ret == null || Object.prototype.toString.call(ret) != Object.prototype.toString.call(d.expect[key])) ret = d.expect[key];
						break;
					}
					return ret;
				});
			};
		}
	};

	// uci.js: sections loaded by "uci get", changes kept client-side until save.
	var ucis = {
		state: {}, order: {}, changed: {},
		load: function(conf) {
			return rpc.declare({ object: 'uci', method: 'get', params: [ 'config' ], expect: { values: {} }, reject: true })(conf).then(function(values) {
				ucis.state[conf] = values;
				ucis.changed[conf] = {};
			});
		},
		sections: function(conf, type) {
			var v = ucis.state[conf] || {};
			return Object.keys(v).map(function(k) { return v[k]; })
				.filter(function(s) { return !type || s['.type'] == type; })
				.sort(function(a, b) { return a['.index'] - b['.index']; });
		},
		get: function(conf, sid, opt) {
			var s = (ucis.state[conf] || {})[sid];
			if (!s) return null;
			return opt == null ? s : s[opt];
		},
		set: function(conf, sid, opt, val) {
			var s = ucis.state[conf][sid];
			if (!s) return;
			if (val == null || val === '' || (Array.isArray(val) && !val.length)) delete s[opt];
			else s[opt] = val;
			ucis.changed[conf][sid] = true;
		},
		unset: function(conf, sid, opt) { ucis.set(conf, sid, opt, null); },
		add: function(conf, type, name) {
			var v = ucis.state[conf], n = Object.keys(v).length;
			var sid = name || ('new' + Math.random().toString(16).slice(2, 8));
			v[sid] = { '.name': sid, '.type': type, '.anonymous': !name, '.index': 1000 + n };
			ucis.changed[conf][sid] = true;
			return sid;
		},
		remove: function(conf, sid) { delete ucis.state[conf][sid]; ucis.changed[conf][sid] = true; },
		save: function() {
			// The stand-in writes the whole package back in one call (LuCI stages
			// per-option add/set/delete in the session and applies with rollback).
			var calls = Object.keys(ucis.state).filter(function(c) { return Object.keys(ucis.changed[c]).length; }).map(function(c) {
				return rpc.declare({ object: 'uci', method: 'standin_replace', params: [ 'config', 'values' ], reject: true })(c, ucis.state[c]);
			});
			return Promise.all(calls);
		}
	};

	// ui.js
	var ui = {
		addNotification: function(title, children, cls) {
			var n = E('div', { 'class': 'alert-message ' + (cls || '') }, [ title ? E('h4', title) : '', children ]);
			var mc = document.getElementById('maincontent');
			mc.insertBefore(n, mc.firstChild);
			return n;
		},
		createHandlerFn: function(ctx, fn) {
			return function(ev) {
				var b = ev.currentTarget;
				b.disabled = true;
				return Promise.resolve(fn.call(ctx, ev)).finally(function() { b.disabled = false; });
			};
		},
		showModal: function(title, children) { return ui.addNotification(title, children, 'modal'); },
		changes: { apply: function() { document.body.setAttribute('data-applied', '1'); } }
	};

	var poll = {
		add: function(fn, interval) { setInterval(fn, (interval || 5) * 1000); }
	};

	var view = Base.extend({
		load: function() {},
		render: function() {},
		handleSave: function(ev) { return Promise.resolve(); },
		handleSaveApply: function(ev, mode) {
			return this.handleSave(ev).then(function() { ui.changes.apply(mode == '0'); });
		},
		handleReset: function() { location.reload(); }
	});

	// form.js: the widgets the voipgw views use.
	var datatypes = {
		uinteger: function(v) { return /^\d+$/.test(v) || 'Expecting: non-negative integer value'; },
		cidr4: function(v) { return /^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/.test(v) || 'Expecting: valid IPv4 CIDR'; },
		cidr6: function(v) { return /^[0-9a-fA-F:]+\/\d{1,3}$/.test(v) || 'Expecting: valid IPv6 CIDR'; },
		macaddr: function(v) { return /^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(v) || 'Expecting: valid MAC address'; },
		ip4addr: function(v) { return /^(\d{1,3}\.){3}\d{1,3}$/.test(v) || 'Expecting: valid IPv4 address'; },
		portrange: function(v) { return /^\d+(-\d+)?$/.test(v) || 'Expecting: valid port or port range (port1-port2)'; }
	};
	function checkType(dt, v) {
		if (!dt || v === '' || v == null) return true;
		var m = /^maxlength\((\d+)\)$/.exec(dt);
		if (m) return String(v).length <= +m[1] || 'Expecting: value with at most ' + m[1] + ' characters';
		if (!datatypes[dt]) throw new Error('stand-in: datatype ' + dt + ' not implemented');
		return datatypes[dt](v);
	}

	var AbstractValue = Base.extend({
		__init__: function(map, section, name, title, description) {
			this.map = map; this.section = section; this.option = name; this.title = title; this.description = description;
			this.keylist = []; this.vallist = [];
		},
		value: function(k, l) { this.keylist.push(k); this.vallist.push(l || k); },
		cfgvalue: function(sid) { return ucis.get(this.map.config, sid, this.option); },
		id: function(sid) { return 'widget.cbid.' + this.map.config + '.' + sid + '.' + this.option; },
		renderRow: function(sid) {
			var v = this.cfgvalue(sid);
			var w = this.renderWidget(sid, v == null ? this.default : v);
			return E('div', { 'class': 'cbi-value', 'data-name': this.option }, [
				E('label', { 'class': 'cbi-value-title', 'for': this.id(sid) }, this.title),
				E('div', { 'class': 'cbi-value-field' }, [ w, this.description ? E('div', { 'class': 'cbi-value-description' }, this.description) : '' ])
			]);
		},
		renderWidget: function(sid, v) {
			return E('input', { 'type': 'text', 'class': 'cbi-input-text', 'id': this.id(sid), 'value': v == null ? '' : v, 'placeholder': this.placeholder || null });
		},
		formvalue: function(sid) { var n = document.getElementById(this.id(sid)); return n ? n.value.trim() : null; },
		parse: function(sid) {
			var v = this.formvalue(sid), n = document.getElementById(this.id(sid));
			var vals = Array.isArray(v) ? v : [ v ];
			for (var i = 0; i < vals.length; i++) {
				var ok = checkType(this.datatype, vals[i]);
				if (ok !== true) { n.classList.add('cbi-input-invalid'); n.title = ok; return Promise.reject(new Error('Some fields are invalid, cannot save values!')); }
			}
			n.classList.remove('cbi-input-invalid');
			if (v === '' || v == null || (Array.isArray(v) && !v.length)) {
				if (this.rmempty === false && this.default != null) ucis.set(this.map.config, sid, this.option, this.default);
				else if (this.cfgvalue(sid) != null) ucis.unset(this.map.config, sid, this.option);
			} else if (JSON.stringify(v) !== JSON.stringify(this.cfgvalue(sid))) {
				ucis.set(this.map.config, sid, this.option, v);
			}
			return Promise.resolve();
		}
	});
	var Value = AbstractValue.extend({});
	var ListValue = AbstractValue.extend({
		renderWidget: function(sid, v) {
			var self = this;
			return E('select', { 'class': 'cbi-input-select', 'id': this.id(sid) }, this.keylist.map(function(k, i) {
				var o = E('option', { 'value': k }, self.vallist[i]);
				if (k == v) o.setAttribute('selected', 'selected');
				return o;
			}));
		}
	});
	var Flag = AbstractValue.extend({
		renderWidget: function(sid, v) {
			var c = E('input', { 'type': 'checkbox', 'id': this.id(sid) });
			c.checked = (v == null ? this.default : v) == '1';
			return c;
		},
		formvalue: function(sid) { var n = document.getElementById(this.id(sid)); return n.checked ? '1' : '0'; },
		parse: function(sid) {
			var v = this.formvalue(sid), cur = this.cfgvalue(sid);
			if (v != (cur == null ? (this.rmempty === false ? null : this.default) : cur)) ucis.set(this.map.config, sid, this.option, v);
			return Promise.resolve();
		}
	});
	var DynamicList = AbstractValue.extend({
		renderWidget: function(sid, v) {
			var vals = v == null ? [] : (Array.isArray(v) ? v : [ v ]);
			var box = E('div', { 'class': 'cbi-dynlist', 'id': this.id(sid) });
			vals.concat([ '' ]).forEach(function(x) { box.appendChild(E('input', { 'type': 'text', 'class': 'cbi-input-text', 'value': x })); });
			return box;
		},
		formvalue: function(sid) {
			var n = document.getElementById(this.id(sid));
			return Array.prototype.map.call(n.querySelectorAll('input'), function(i) { return i.value.trim(); }).filter(function(x) { return x; });
		}
	});

	var AbstractSection = Base.extend({
		__init__: function(map, type, title, description) {
			this.map = map; this.sectiontype = type; this.title = title; this.description = description; this.children = [];
		},
		option: function(C, name, title, description) {
			var o = new C(this.map, this, name, title, description);
			this.children.push(o);
			return o;
		},
		renderSection: function(sid, removable) {
			var self = this;
			return E('div', { 'class': 'cbi-section-node', 'id': 'cbi-' + this.map.config + '-' + sid }, [
				removable ? E('button', { 'class': 'cbi-button cbi-button-remove', 'click': function() { ucis.remove(self.map.config, sid); self.map.rerender(); } }, 'Delete') : ''
			].concat(this.children.map(function(o) { return o.renderRow(sid); })));
		},
		parse: function() {
			var self = this;
			return Promise.all(this.sids().reduce(function(a, sid) {
				return a.concat(self.children.map(function(o) { return o.parse(sid); }));
			}, []));
		}
	});
	var NamedSection = AbstractSection.extend({
		__init__: function(map, name, type, title, description) {
			AbstractSection.prototype.__init__.call(this, map, type, title, description);
			this.section = name;
		},
		sids: function() { return ucis.get(this.map.config, this.section) ? [ this.section ] : []; },
		render: function() {
			var self = this, present = this.sids().length > 0;
			return E('div', { 'class': 'cbi-section', 'id': 'cbi-' + this.map.config + '-' + this.section + '-box' }, [
				E('h3', this.title), this.description ? E('div', { 'class': 'cbi-section-descr' }, this.description) : '',
				present ? this.renderSection(this.section, this.addremove)
					: E('button', { 'class': 'cbi-button cbi-button-add', 'click': function() { ucis.add(self.map.config, self.sectiontype, self.section); self.map.rerender(); } }, 'Add ' + this.title)
			]);
		}
	});
	var TypedSection = AbstractSection.extend({
		sids: function() { return ucis.sections(this.map.config, this.sectiontype).map(function(s) { return s['.name']; }); },
		render: function() {
			var self = this;
			return E('div', { 'class': 'cbi-section', 'id': 'cbi-' + this.map.config + '-' + this.sectiontype }, [
				E('h3', this.title), this.description ? E('div', { 'class': 'cbi-section-descr' }, this.description) : ''
			].concat(this.sids().map(function(sid) { return self.renderSection(sid, self.addremove); }))
				.concat(this.addremove ? [ E('button', { 'class': 'cbi-button cbi-button-add', 'click': function() { ucis.add(self.map.config, self.sectiontype); self.map.rerender(); } }, 'Add') ] : []));
		}
	});
	var Map = Base.extend({
		__init__: function(config, title, description) { this.config = config; this.title = title; this.description = description; this.sections = []; },
		section: function(C) {
			var args = Array.prototype.slice.call(arguments, 1);
			var s = new (Function.prototype.bind.apply(C, [ null, this ].concat(args)))();
			this.sections.push(s);
			return s;
		},
		renderContents: function() {
			return E('div', { 'class': 'cbi-map', 'id': 'cbi-' + this.config }, [
				E('h2', this.title), E('div', { 'class': 'cbi-map-descr' }, this.description)
			].concat(this.sections.map(function(s) { return s.render(); })));
		},
		render: function() { var n = this.renderContents(); this.node = n; return Promise.resolve(n); },
		rerender: function() { var n = this.renderContents(); this.node.replaceWith(n); this.node = n; },
		parse: function() { return Promise.all(this.sections.map(function(s) { return s.parse(); })); },
		load: function() { return ucis.load(this.config); },
		save: function(cb, silent) {
			var self = this;
			return this.parse().then(cb).then(function() { return ucis.save(); }).then(function() { return self.load(); })
				.catch(function(e) {
					if (!silent) ui.showModal('Save error', E('p', e.message));
					return Promise.reject(e);
				}).then(function() { self.rerender(); });
		}
	});
	var form = { Map: Map, NamedSection: NamedSection, TypedSection: TypedSection, Value: Value, ListValue: ListValue, Flag: Flag, DynamicList: DynamicList };

	var modules = { view: view, form: form, uci: ucis, rpc: rpc, ui: ui, poll: poll };

	// luci.js's require: fetch the class file, collect its 'require' lines, and
	// run the source as the body of a function of those classes.
	function loadView(path) {
		return fetch('/luci-static/resources/view/' + path + '.js').then(function(r) {
			if (!r.ok) throw new Error('view ' + path + ': HTTP ' + r.status);
			return r.text();
		}).then(function(src) {
			var names = [], re = /^\s*'require\s+([\w.]+)';/mg, m;
			while ((m = re.exec(src)) != null) {
				if (!modules[m[1]]) throw new Error('stand-in: module ' + m[1] + ' not implemented');
				names.push(m[1]);
			}
			var fn = new Function(names.join(','), src + '\n//# sourceURL=' + path + '.js');
			return fn.apply(null, names.map(function(n) { return modules[n]; }));
		});
	}

	window.standinShow = function(path) {
		var mc = document.getElementById('view');
		return loadView(path).then(function(V) {
			var v = new V();
			return Promise.resolve(v.load()).then(function(data) { return v.render(data); }).then(function(node) {
				mc.replaceChildren(node);
				if (v.handleSave || v.handleSaveApply || v.handleReset) {
					var footer = E('div', { 'class': 'cbi-page-actions' }, [
						v.handleSaveApply ? E('button', { 'id': 'btn-save-apply', 'class': 'cbi-button cbi-button-apply', 'click': ui.createHandlerFn(v, function(ev) { return v.handleSaveApply(ev, '0').catch(function() {}); }) }, 'Save & Apply') : '',
						' ',
						v.handleSave ? E('button', { 'id': 'btn-save', 'class': 'cbi-button cbi-button-save', 'click': ui.createHandlerFn(v, function(ev) { return v.handleSave(ev).catch(function() {}); }) }, 'Save') : '',
						' ',
						v.handleReset ? E('button', { 'class': 'cbi-button cbi-button-reset', 'click': function() { v.handleReset(); } }, 'Reset') : ''
					]);
					mc.appendChild(footer);
				}
				document.body.setAttribute('data-rendered', path);
			});
		}).catch(function(e) {
			mc.replaceChildren(E('pre', { 'id': 'standin-error', 'style': 'color:red' }, String(e && e.stack || e)));
			document.body.setAttribute('data-rendered', 'error');
		});
	};
})();
